// The live video: plays the annotated output by WHEP and reconnects when it drops, sends
// the webcam in by WHIP on request, and shows the stream's own figures from getStats().
// Uses authHeaders() from app.js.
'use strict';

const video = (() => {
  const ICE_SERVERS = JSON.parse(document.currentScript.dataset.iceServers || '[]');
  const RETRY_MS = 2000;
  const screen = document.getElementById('video');
  const placeholder = document.getElementById('video-placeholder');
  const statsBox = document.getElementById('video-stats');
  const webcam = document.getElementById('webcam');
  const camera = document.getElementById('camera');
  const webcamNote = document.getElementById('webcam-note');
  const state = { viewer: null, publisher: null, retry: null, stats: {}, last: null };

  // Non-trickle signaling: the offer goes out once it holds every candidate.
  function gathered(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== 'complete') return;
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      };
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 2000);
    });
  }

  // POSTs the offer to /whep or /whip; returns the session's resource URL.
  async function negotiate(pc, endpoint) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...authHeaders() },
      body: pc.localDescription.sdp,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: response.statusText }));
      if (response.status === 401) document.getElementById('token-form').hidden = false;
      throw new Error(error.error);
    }
    const resource = new URL(response.headers.get('Location'), window.location.href).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    return resource;
  }

  function end(session) {
    if (!session) return;
    session.pc.close();
    if (session.resource) {
      fetch(session.resource, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(() => {});
    }
    if (session.stream) session.stream.getTracks().forEach((track) => track.stop());
  }

  function retrySoon() {
    if (state.retry) return;
    state.retry = setTimeout(() => {
      state.retry = null;
      watch();
    }, RETRY_MS);
  }

  async function watch() {
    end(state.viewer);
    const pc = new RTCPeerConnection({ iceServers: ICE_SERVERS });
    const session = { pc, resource: null };
    state.viewer = session;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('track', (event) => {
      screen.srcObject = new MediaStream([event.track]);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (state.viewer !== session) return;
      placeholder.hidden = pc.connectionState === 'connected';
      if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) {
        placeholder.textContent = 'reconnecting…';
        retrySoon();
      }
    });
    try {
      session.resource = await negotiate(pc, '/whep');
    } catch (error) {
      if (state.viewer !== session) return;
      placeholder.hidden = false;
      placeholder.textContent = `no video: ${error.message}`;
      retrySoon();
    }
  }

  async function listCameras() {
    const chosen = camera.value;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const cameras = devices.filter((d) => d.kind === 'videoinput');
    camera.replaceChildren(new Option('default camera', ''));
    cameras.forEach((d, i) => camera.add(new Option(d.label || `camera ${i + 1}`, d.deviceId)));
    camera.value = cameras.some((d) => d.deviceId === chosen) ? chosen : '';
  }

  function showPublishing(on) {
    webcam.textContent = on ? 'stop my webcam' : 'use my webcam';
    if (on) webcam.dataset.on = '1';
    else delete webcam.dataset.on;
  }

  async function publish() {
    const constraints = { audio: false, video: camera.value ? { deviceId: { exact: camera.value } } : true };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const pc = new RTCPeerConnection({ iceServers: ICE_SERVERS });
    const session = { pc, stream, resource: null };
    const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
    // visiond decodes H.264: offer only that.
    const h264 = (RTCRtpSender.getCapabilities('video') || { codecs: [] }).codecs
      .filter((c) => c.mimeType.toLowerCase() === 'video/h264');
    if (h264.length === 0) {
      end(session);
      throw new Error('this browser cannot send H.264 video');
    }
    transceiver.setCodecPreferences(h264);
    pc.addEventListener('connectionstatechange', () => {
      if (['failed', 'closed'].includes(pc.connectionState) && state.publisher === session) {
        stopPublishing('the webcam stream ended');
      }
    });
    try {
      session.resource = await negotiate(pc, '/whip');
    } catch (error) {
      end(session);
      throw error;
    }
    state.publisher = session;
    showPublishing(true);
    await listCameras(); // labels show once the camera is allowed
  }

  function stopPublishing(why = '') {
    end(state.publisher);
    state.publisher = null;
    showPublishing(false);
    webcamNote.textContent = why;
  }

  async function toggleWebcam() {
    if (state.publisher) return stopPublishing();
    if (!window.isSecureContext || !navigator.mediaDevices) {
      webcamNote.textContent = 'Browsers give the camera only to secure pages: open this page over ' +
        'https:// (set server.tls_cert and tls_key) or on localhost.';
      return;
    }
    webcamNote.textContent = 'starting…';
    try {
      await publish();
      webcamNote.textContent = '';
    } catch (error) {
      webcamNote.textContent = `webcam: ${error.message}`;
    }
  }

  // Once a second: resolution, frame rate, bitrate, packets lost and round-trip time.
  async function updateStats() {
    const pc = state.viewer && state.viewer.pc;
    if (!pc || pc.connectionState !== 'connected') {
      statsBox.textContent = '';
      return;
    }
    const report = await pc.getStats();
    let inbound = null;
    let rtt = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      }
    });
    if (!inbound) return;
    const last = state.last;
    const seconds = last ? (inbound.timestamp - last.timestamp) / 1000 : 0;
    const bitrate = seconds > 0 ? ((inbound.bytesReceived - last.bytesReceived) * 8) / seconds : 0;
    state.last = { timestamp: inbound.timestamp, bytesReceived: inbound.bytesReceived };
    state.stats = {
      width: inbound.frameWidth || 0,
      height: inbound.frameHeight || 0,
      fps: inbound.framesPerSecond || 0,
      bitrate,
      packetsLost: inbound.packetsLost || 0,
      rtt,
      framesDecoded: inbound.framesDecoded || 0,
    };
    const s = state.stats;
    statsBox.textContent = `${s.width}×${s.height} · ${s.fps.toFixed(0)} fps · ${(s.bitrate / 1e6).toFixed(2)} Mbit/s · ` +
      `${s.packetsLost} lost · RTT ${rtt === null ? '–' : `${(rtt * 1000).toFixed(0)} ms`}`;
  }

  webcam.addEventListener('click', toggleWebcam);
  if (navigator.mediaDevices) listCameras().catch(() => {});
  window.addEventListener('pagehide', () => {
    end(state.viewer);
    end(state.publisher);
  });
  setInterval(() => updateStats().catch(() => {}), 1000);
  watch();
  // For scripts and tests: the current figures and the sessions.
  return { state, watch, toggleWebcam };
})();
