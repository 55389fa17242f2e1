#!/usr/bin/python3
"""A real RTSP server on loopback, serving sample videos in an endless loop like live cameras.

Used by the native stack (scripts/local-test.sh up) where MediaMTX and Docker are not available.
Each `<stem>.h264` Annex-B file in --media-dir (made from ../shared/media/<stem>.mp4 by the stack
script) is mounted twice:

  rtsp://HOST:PORT/<stem>        re-encoded with x264 ultrafast: Constrained Baseline, like cheap
                                 cameras; an IDR every 2 s
  rtsp://HOST:PORT/<stem>-high   re-encoded as High profile (CABAC), like most real cameras

Why re-encode instead of sending the file's H.264 as is: `multifilesrc loop=true` cannot loop an
MP4 through qtdemux, and raw H.264 with B-frames loses its timestamps on the way (clients see the
clock stuck). Decoding and re-encoding gives continuous timestamps and regular keyframes, at about
15% of a core per 720p stream while a client is connected. Media are shared between clients, and
only run while someone watches.

With --user and a password in RTSP_PASSWORD (the environment, not argv, so that `ps` does not
show it), every mount requires HTTP Basic authentication, like a camera with an account.

Run with Debian's /usr/bin/python3, which has the GStreamer bindings. Prints `ready <url>...` once
listening so scripts can wait for it.
"""

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} sliced-threads=false",
    "-high": "x264enc tune=zerolatency speed-preset=veryfast key-int-max={gop} sliced-threads=false "
    "! video/x-h264,profile=high",
}


def launch_line(path: str, fps: str, suffix: str) -> str:
    num, _, den = fps.partition("/")
    gop = max(1, round(2 * int(num) / int(den or 1)))
    encoder = ENCODERS[suffix].format(gop=gop)
    return (
        f'( multifilesrc location="{path}" loop=true '
        f'caps="video/x-h264,stream-format=byte-stream,framerate={fps}" '
        f"! h264parse ! avdec_h264 ! videoconvert ! {encoder} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8554")
    parser.add_argument("--media-dir", required=True, help="folder of <stem>.h264 + <stem>.fps files")
    parser.add_argument("--user", help="require Basic authentication as this user (password: $RTSP_PASSWORD)")
    args = parser.parse_args()
    permissions = None

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(args.port)
    mounts = server.get_mount_points()
    if args.user:
        password = os.environ.get("RTSP_PASSWORD")
        if not password:
            print("--user needs RTSP_PASSWORD in the environment", file=sys.stderr)
            return 2
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)

    urls = []
    for name in sorted(os.listdir(args.media_dir)):
        if not name.endswith(".h264"):
            continue
        stem = name[: -len(".h264")]
        path = os.path.join(args.media_dir, name)
        with open(os.path.join(args.media_dir, stem + ".fps"), encoding="ascii") as f:
            fps = f.read().strip()
        for suffix in ENCODERS:
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch_line(path, fps, suffix))
            factory.set_shared(True)
            if permissions is not None:
                factory.set_permissions(permissions)
            mounts.add_factory(f"/{stem}{suffix}", factory)
            urls.append(f"rtsp://{args.host}:{args.port}/{stem}{suffix}")

    if not urls:
        print(f"no .h264 files in {args.media_dir}", file=sys.stderr)
        return 1
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready " + " ".join(urls), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
