// An independent WHEP viewer on werift (WebRTC in TypeScript, npm): offers H.264 the way a
// browser does, plays the visiond output for a while, and reports what arrived.
//
//     WERIFT_DIR=vendor/werift node werift_viewer.mjs URL SECONDS
//
// Prints one JSON object: the connection state reached, RTP packets and access units seen,
// whether the first access unit was a keyframe (SPS + IDR), and DELETE's status.
import { createRequire } from "node:module";
import path from "node:path";

// werift lives where tools/fetch-werift put it, not beside this script.
const require = createRequire(path.resolve(process.env.WERIFT_DIR, "package.json"));
const { RTCPeerConnection, RTCRtpCodecParameters } = require("werift");

const [base, seconds] = [process.argv[2].replace(/\/$/, ""), Number(process.argv[3] ?? 5)];

const h264 = new RTCRtpCodecParameters({
  mimeType: "video/H264",
  clockRate: 90000,
  rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }],
  parameters: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
});
const pc = new RTCPeerConnection({ codecs: { video: [h264] } });
const transceiver = pc.addTransceiver("video", { direction: "recvonly" });

const report = { state: "new", packets: 0, units: 0, first_unit_keyframe: null, delete: null };
let unitTypes = new Set();
transceiver.onTrack.subscribe((track) => {
  track.onReceiveRtp.subscribe((rtp) => {
    report.packets += 1;
    const payload = rtp.payload;
    let type = payload[0] & 0x1f;
    if (type === 28) type = payload[1] & 0x1f; // FU-A: the fragment's NAL type
    if (type === 24) {
      // STAP-A: every NAL unit in it
      for (let at = 1; at + 2 < payload.length; ) {
        const size = (payload[at] << 8) | payload[at + 1];
        unitTypes.add(payload[at + 2] & 0x1f);
        at += 2 + size;
      }
    } else {
      unitTypes.add(type);
    }
    if (rtp.header.marker) {
      if (report.units === 0) report.first_unit_keyframe = unitTypes.has(7) && unitTypes.has(5);
      report.units += 1;
      unitTypes = new Set();
    }
  });
});
pc.connectionStateChange.subscribe((state) => {
  if (state === "connected") report.state = state;
});

await pc.setLocalDescription(await pc.createOffer());
if (pc.iceGatheringState !== "complete") {
  await new Promise((done) =>
    pc.iceGatheringStateChange.subscribe((s) => s === "complete" && done()),
  );
}
const offered = await fetch(`${base}/whep`, {
  method: "POST",
  headers: { "Content-Type": "application/sdp" },
  body: pc.localDescription.sdp,
});
if (offered.status !== 201) {
  console.error(`POST /whep: ${offered.status} ${await offered.text()}`);
  process.exit(1);
}
const resource = new URL(offered.headers.get("location"), base).href;
await pc.setRemoteDescription({ type: "answer", sdp: await offered.text() });
await new Promise((done) => setTimeout(done, seconds * 1000));
report.delete = (await fetch(resource, { method: "DELETE" })).status;
await pc.close();
console.log(JSON.stringify(report));
process.exit(0);
