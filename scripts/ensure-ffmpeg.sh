#!/usr/bin/env bash
# Make sure the FFmpeg command-line tools (`ffmpeg`, `ffprobe`) are installed: the worker
# decodes video jobs with them as subprocesses (docs/video.md).
#
# If both are on PATH, do nothing. Otherwise, as root, install Debian's `ffmpeg` package with
# apt-get; as another user, print what to install and carry on (still images work without
# FFmpeg; video jobs fail with `video_decode_failed`, and the video tests fail under
# `make test`). Idempotent.
#
# Environment:
#   INFERQ_SKIP_FFMPEG=1   do nothing (FFmpeg is managed elsewhere)
set -euo pipefail

if [[ "${INFERQ_SKIP_FFMPEG:-0}" == 1 ]]; then
    echo "ffmpeg: skipped (INFERQ_SKIP_FFMPEG=1)"
    exit 0
fi
have() { command -v "$1" >/dev/null 2>&1; }
if have ffmpeg && have ffprobe; then
    exit 0
fi
if [[ "$(id -u)" == 0 ]] && have apt-get; then
    echo "ffmpeg: installing Debian's ffmpeg package (video jobs)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
    have ffmpeg && have ffprobe || { echo "ffmpeg: ERROR: installation failed" >&2; exit 1; }
    echo "ffmpeg: installed ($(ffmpeg -version | head -n 1))" >&2
else
    echo "ffmpeg: WARNING: ffmpeg/ffprobe not found; video jobs need them (as root: apt-get install ffmpeg)" >&2
fi
