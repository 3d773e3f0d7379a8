"""An independent WHIP/WHEP client for visiond's tests, on aiortc (not webrtc-rs).

    webrtc_client.py URL play --viewers N --seconds S
        N viewers at once; prints per viewer the frames it decoded, how they looked, the
        frame size each time it changed, and the longest wait between two frames.
    webrtc_client.py URL publish-and-play --seconds S
        Publishes a green picture with a moving white box by WHIP (H.264) and plays the
        output by WHEP meanwhile; prints what the viewer saw.
    webrtc_client.py URL replace --seconds S
        Publishes green, then a second publisher red: visiond drops the first (its peer
        closes) and the viewer sees red.
    webrtc_client.py URL pli --count N
        Plays; N times, half a second after a keyframe, sends a PLI and measures how long the
        next keyframe takes (the periodic one is 2 s apart).
    webrtc_client.py URL cycles --count N --parallel P
        N WHEP sessions, P at a time: offer, answer, connect, DELETE, close.
    webrtc_client.py URL vanish --as publisher|viewer --seconds S
        Connects, streams S seconds, prints what it did and exits at once: no DELETE, no
        close, no DTLS alert, as a killed process or a lost network would.

`play --audio-first` offers an audio section before the video one, as most WHEP players do
(and makes it the BUNDLE tag).

Prints one JSON object on stdout. Needs only aiortc (which brings PyAV); no numpy.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

WIDTH, HEIGHT = 320, 240


def post_offer(url, sdp):
    request = urllib.request.Request(
        url, data=sdp.encode(), method="POST", headers={"Content-Type": "application/sdp"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        if response.status != 201:
            raise RuntimeError(f"{url}: {response.status}")
        location = response.headers["Location"]
        return response.read().decode(), urllib.parse.urljoin(url, location)


def delete(url):
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status


async def negotiate(pc, url):
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers before returning
    answer, resource = await asyncio.to_thread(post_offer, url, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return resource


async def connected(pc, limit=20):
    deadline = time.monotonic() + limit
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise RuntimeError(f"peer {pc.connectionState}")
        await asyncio.sleep(0.05)


def describe(frame):
    """Mean R, G, B of a decoded frame (sampled), and a fingerprint to tell frames apart."""
    rgb = frame.to_rgb().planes[0]
    data = bytes(rgb)
    stride = rgb.line_size
    sums = [0, 0, 0]
    count = 0
    for y in range(0, frame.height, 8):
        row = data[y * stride : y * stride + frame.width * 3]
        for x in range(0, frame.width * 3, 24):
            sums[0] += row[x]
            sums[1] += row[x + 1]
            sums[2] += row[x + 2]
            count += 1
    return [s / count for s in sums], hash(data[:: 97])


async def start_viewing(base, audio_first=False):
    """A WHEP viewer: its peer, its receiving transceiver, where its video track arrives,
    and the session's resource URL."""
    pc = RTCPeerConnection()
    if audio_first:
        pc.addTransceiver("audio", direction="recvonly")
    transceiver = pc.addTransceiver("video", direction="recvonly")
    tracks = asyncio.Queue()
    pc.on("track", lambda track: tracks.put_nowait(track) if track.kind == "video" else None)
    resource = await negotiate(pc, base + "/whep")
    return pc, transceiver, tracks, resource


async def stop_viewing(pc, resource):
    """Ends the WHEP session (returns DELETE's status) and closes the peer."""
    try:
        return await asyncio.to_thread(delete, resource)
    finally:
        await pc.close()


async def view(base, seconds, report, audio_first=False):
    pc, _, tracks, resource = await start_viewing(base, audio_first)
    result = {"frames": 0, "size": None, "sizes": [], "colours": [], "fingerprints": 0}
    result["longest_gap"] = 0.0  # seconds between two decoded frames, after the first
    fingerprints = set()
    last = None
    try:
        await connected(pc)
        track = await asyncio.wait_for(tracks.get(), 10)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(track.recv(), 5)
            except (asyncio.TimeoutError, MediaStreamError):
                break
            now = time.monotonic()
            if last is not None:
                result["longest_gap"] = max(result["longest_gap"], now - last)
            last = now
            result["frames"] += 1
            result["size"] = [frame.width, frame.height]
            if not result["sizes"] or result["sizes"][-1] != result["size"]:
                result["sizes"].append(result["size"])
            if result["frames"] % 5 == 0:
                colour, fingerprint = describe(frame)
                result["colours"].append(colour)
                fingerprints.add(fingerprint)
    finally:
        result["fingerprints"] = len(fingerprints)
        result["delete"] = await stop_viewing(pc, resource)
    report.append(result)


GREEN, RED = (30, 200, 60), (210, 40, 40)


class Pattern(VideoStreamTrack):
    """A picture of one colour with a white box moving across it."""

    def __init__(self, colour=GREEN):
        super().__init__()
        self.number = 0
        self.colour = bytes(colour)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.number += 1
        frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
        box = (self.number * 4) % (WIDTH - 40)
        plain = self.colour * WIDTH
        boxed = self.colour * box + bytes([255, 255, 255]) * 40 + self.colour * (WIDTH - box - 40)
        rows = [boxed if 100 <= y < 140 else plain for y in range(HEIGHT)]
        frame.planes[0].update(b"".join(rows))
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def start_publishing(base, colour):
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(Pattern(colour), direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    resource = await negotiate(pc, base + "/whip")
    await connected(pc)
    return pc, resource


async def stop_publishing(pc, resource):
    try:
        return await asyncio.to_thread(delete, resource)
    except urllib.error.HTTPError as error:
        return error.code
    finally:
        await pc.close()


async def publish(base, seconds):
    pc, resource = await start_publishing(base, GREEN)
    await asyncio.sleep(seconds)
    return await stop_publishing(pc, resource)


async def replace(base, seconds):
    """Green, then red from a second publisher; returns how the first one ended."""
    first, first_resource = await start_publishing(base, GREEN)
    await asyncio.sleep(seconds / 2)
    second, second_resource = await start_publishing(base, RED)
    deadline = time.monotonic() + 30
    while first.connectionState not in ("closed", "failed") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    first_state = first.connectionState
    await asyncio.sleep(seconds / 2)
    return {
        "first_state": first_state,
        "first_delete": await stop_publishing(first, first_resource),
        "second_delete": await stop_publishing(second, second_resource),
    }


async def keyframes_on_pli(base, count):
    pc, transceiver, tracks, resource = await start_viewing(base)
    delays = []
    try:
        await connected(pc)
        track = await asyncio.wait_for(tracks.get(), 10)

        async def next_keyframe():
            while not (await asyncio.wait_for(track.recv(), 5)).key_frame:
                pass
            return time.monotonic()

        await next_keyframe()
        stats = await transceiver.receiver.getStats()
        ssrc = next(s.ssrc for s in stats.values() if s.type == "inbound-rtp")
        for _ in range(count):
            await next_keyframe()
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle:  # keep decoding meanwhile
                await asyncio.wait_for(track.recv(), 5)
            asked = time.monotonic()
            await transceiver.receiver._send_rtcp_pli(ssrc)  # aiortc's own PLI sender
            delays.append(await next_keyframe() - asked)
    finally:
        await stop_viewing(pc, resource)
    return {"delays": delays}


async def cycles(base, count, parallel):
    done = 0

    async def one():
        pc, _, _, resource = await start_viewing(base)
        try:
            await connected(pc)
        finally:
            await stop_viewing(pc, resource)

    while done < count:
        batch = min(parallel, count - done)
        await asyncio.gather(*(one() for _ in range(batch)))
        done += batch
    return {"cycles": done}


async def vanish(base, role, seconds):
    if role == "publisher":
        pc, resource = await start_publishing(base, GREEN)
    else:
        pc, _, _, resource = await start_viewing(base)
        await connected(pc)
    await asyncio.sleep(seconds)
    json.dump({"connected": pc.connectionState, "resource": resource}, sys.stdout)
    sys.stdout.flush()
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    modes = ["play", "publish-and-play", "replace", "cycles", "pli", "vanish"]
    parser.add_argument("mode", choices=modes)
    parser.add_argument("--as", dest="role", choices=["publisher", "viewer"], default="viewer")
    parser.add_argument("--audio-first", action="store_true")
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    if args.mode == "cycles":
        result = await cycles(base, args.count, args.parallel)
    elif args.mode == "pli":
        result = await keyframes_on_pli(base, args.count)
    elif args.mode == "vanish":
        await vanish(base, args.role, args.seconds)
    elif args.mode == "play":
        report = []
        viewers = (view(base, args.seconds, report, args.audio_first) for _ in range(args.viewers))
        await asyncio.gather(*viewers)
        result = {"viewers": report}
    elif args.mode == "replace":
        report = []
        replaced, _ = await asyncio.gather(
            replace(base, args.seconds), view(base, args.seconds + 4, report)
        )
        result = {"replace": replaced, "viewers": report}
    else:
        report = []
        published, _ = await asyncio.gather(
            publish(base, args.seconds + 2), view(base, args.seconds + 2, report)
        )
        result = {"published": published, "viewers": report}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
