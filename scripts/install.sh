#!/bin/sh
# Mozart installer: downloads the standalone binary for this machine, verifies it against the
# release's SHA256SUMS and installs it as `mozart`.
#
#   curl -fsSL https://raw.githubusercontent.com/mozart-ai/mozart/main/scripts/install.sh | sh
#   curl -fsSL https://raw.githubusercontent.com/mozart-ai/mozart/main/scripts/install.sh | sh -s -- --version 0.2.0
#
# POSIX sh only (dash, busybox, bash --posix). Everything runs from main() at the very end, so a
# download cut short while piping into sh executes nothing.

set -eu

SUPPORTED="linux-x64, linux-arm64, linux-x64-musl, darwin-x64, darwin-arm64, windows-x64"
DEFAULT_RELEASES="https://github.com/mozart-ai/mozart/releases"

usage() {
  cat <<'EOF'
Install the mozart binary.

Usage: install.sh [--version X] [--dir DIR] [--dry-run] [--help]
       curl -fsSL <url>/install.sh | sh -s -- [options]

Options:
  --version X   install release X (e.g. 0.2.0) instead of the latest one
  --dir DIR     install into DIR (same as MOZART_INSTALL_DIR)
  --dry-run     print the platform, the URLs and the target path; download nothing
  -h, --help    show this help

Environment:
  MOZART_INSTALL_DIR       where to install; default ~/.local/bin, else /usr/local/bin if writable
  MOZART_INSTALL_BASE      URL of the folder holding mozart-<os>-<arch> and SHA256SUMS
                           (a mirror); takes precedence over --version
  MOZART_INSTALL_RELEASES  releases URL (default https://github.com/mozart-ai/mozart/releases):
                           assets come from <it>/latest/download or <it>/download/v<X>
  MOZART_INSTALL_OS, MOZART_INSTALL_ARCH, MOZART_INSTALL_LIBC (glibc|musl)
                           override platform detection
  MOZART_INSTALL_DOWNLOADER  curl or wget (default: whichever exists, curl first)

Supported platforms: linux-x64, linux-arm64, linux-x64-musl, darwin-x64, darwin-arm64, windows-x64
EOF
}

say() { printf '%s\n' "$*"; }
die() {
  printf 'mozart install: error: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

# --- platform -------------------------------------------------------------------------------

detect_os() {
  raw=${MOZART_INSTALL_OS:-$(uname -s)}
  case $raw in
    Linux | linux) echo linux ;;
    Darwin | darwin | macos) echo darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT | windows) echo windows ;;
    *) echo "unknown:$raw" ;;
  esac
}

detect_arch() {
  raw=${MOZART_INSTALL_ARCH:-$(uname -m)}
  # An x64 shell under Rosetta on an Apple Silicon Mac still wants the native arm64 build.
  if [ -z "${MOZART_INSTALL_ARCH:-}" ] && [ "$1" = darwin ] && [ "$raw" = x86_64 ] &&
    [ "$(sysctl -n hw.optional.arm64 2>/dev/null || true)" = 1 ]; then
    raw=arm64
  fi
  case $raw in
    x86_64 | amd64 | x64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "unknown:$raw" ;;
  esac
}

detect_libc() {
  if [ -n "${MOZART_INSTALL_LIBC:-}" ]; then
    echo "$MOZART_INSTALL_LIBC"
  elif ls /lib/ld-musl-* >/dev/null 2>&1 || ldd --version 2>&1 | grep -qi musl; then
    echo musl
  else
    echo glibc
  fi
}

unsupported() {
  die "no mozart build for $1" "supported platforms: $SUPPORTED" \
    "set MOZART_INSTALL_OS / MOZART_INSTALL_ARCH if detection got it wrong"
}

# --- tools ----------------------------------------------------------------------------------

pick_downloader() {
  if [ -n "${MOZART_INSTALL_DOWNLOADER:-}" ]; then
    command -v "$MOZART_INSTALL_DOWNLOADER" >/dev/null 2>&1 ||
      die "MOZART_INSTALL_DOWNLOADER=$MOZART_INSTALL_DOWNLOADER is not on PATH"
    echo "$MOZART_INSTALL_DOWNLOADER"
  elif command -v curl >/dev/null 2>&1; then
    echo curl
  elif command -v wget >/dev/null 2>&1; then
    echo wget
  else
    die "neither curl nor wget was found" "install one of them (e.g. apt-get install curl) and run this again"
  fi
}

# download URL FILE
download() {
  case $DOWNLOADER in
    curl) curl -fsSL --retry 3 -o "$2" "$1" </dev/null ;;
    wget) wget -q -O "$2" "$1" </dev/null ;;
    *) die "unsupported downloader $DOWNLOADER (use curl or wget)" ;;
  esac || die "download failed: $1" "check the version and your network, then run this again"
}

# Checked before anything is downloaded: an unverifiable binary is never installed.
pick_hasher() {
  if command -v sha256sum >/dev/null 2>&1; then
    echo sha256sum
  elif command -v shasum >/dev/null 2>&1; then
    echo shasum
  else
    die "neither sha256sum nor shasum was found, so the download cannot be verified" \
      "install coreutils (sha256sum) or perl (shasum) and run this again"
  fi
}

sha256_of() {
  case $HASHER in
    sha256sum) sha256sum "$1" | cut -d ' ' -f 1 ;;
    *) shasum -a 256 "$1" | cut -d ' ' -f 1 ;;
  esac
}

# The checksum SHA256SUMS lists for ASSET; sha256sum's binary-mode "*name" counts too.
expected_sum() {
  awk -v f="$2" '$2 == f || $2 == "*" f { print tolower($1); exit }' "$1"
}

# --- install folder -------------------------------------------------------------------------

writable_dir() {
  mkdir -p "$1" 2>/dev/null && [ -d "$1" ] && [ -w "$1" ]
}

pick_dir() {
  if [ -n "${MOZART_INSTALL_DIR:-}" ]; then
    d=${MOZART_INSTALL_DIR%/}
    writable_dir "${d:-/}" || die "cannot write to the install folder $MOZART_INSTALL_DIR"
    echo "${d:-/}"
  elif [ -n "${HOME:-}" ] && writable_dir "$HOME/.local/bin"; then
    echo "$HOME/.local/bin"
  elif writable_dir /usr/local/bin; then
    echo /usr/local/bin
  else
    die "no writable install folder: tried ~/.local/bin and /usr/local/bin" "set MOZART_INSTALL_DIR to a folder you can write"
  fi
}

path_hint() {
  case ":${PATH:-}:" in
    *":$1:"*) ;;
    *)
      say ""
      say "$1 is not on your PATH. Add it, e.g. in ~/.profile or your shell's rc file:"
      say "  export PATH=\"$1:\$PATH\""
      if [ -n "${GITHUB_PATH:-}" ]; then say "In GitHub Actions: echo \"$1\" >> \"\$GITHUB_PATH\""; fi
      ;;
  esac
}

# --- main -----------------------------------------------------------------------------------

main() {
  version=""
  dir_flag=""
  dry_run=0
  while [ $# -gt 0 ]; do
    case $1 in
      --version)
        [ $# -ge 2 ] || die "--version needs a value, e.g. --version 0.2.0"
        version=$2
        shift 2
        ;;
      --version=*) version=${1#--version=} && shift ;;
      --dir)
        [ $# -ge 2 ] || die "--dir needs a folder"
        dir_flag=$2
        shift 2
        ;;
      --dir=*) dir_flag=${1#--dir=} && shift ;;
      --dry-run) dry_run=1 && shift ;;
      -h | --help) usage && return 0 ;;
      *) die "unknown option $1" "run with --help for the options" ;;
    esac
  done
  version=${version#v}
  case $version in
    *[!0-9A-Za-z.+-]*) die "invalid version \"$version\" (expected e.g. 0.2.0)" ;;
  esac
  if [ -n "$dir_flag" ]; then MOZART_INSTALL_DIR=$dir_flag; fi

  os=$(detect_os)
  arch=$(detect_arch "$os")
  case $os in unknown:*) unsupported "operating system \"${os#unknown:}\"" ;; esac
  case $arch in unknown:*) unsupported "architecture \"${arch#unknown:}\"" ;; esac
  platform="$os-$arch"
  if [ "$os" = linux ] && [ "$(detect_libc)" = musl ]; then
    [ "$arch" = x64 ] || unsupported "$platform with musl libc"
    platform=linux-x64-musl
  fi
  case $platform in
    linux-x64 | linux-arm64 | linux-x64-musl | darwin-x64 | darwin-arm64 | windows-x64) ;;
    *) unsupported "$platform" ;;
  esac
  exe=""
  if [ "$os" = windows ]; then exe=.exe; fi
  asset="mozart-$platform$exe"

  releases=${MOZART_INSTALL_RELEASES:-$DEFAULT_RELEASES}
  releases=${releases%/}
  if [ -n "${MOZART_INSTALL_BASE:-}" ]; then
    base=${MOZART_INSTALL_BASE%/}
  elif [ -n "$version" ]; then
    base="$releases/download/v$version"
  else
    base="$releases/latest/download"
  fi

  if [ "$dry_run" = 1 ]; then
    say "platform: $platform"
    say "binary:   $base/$asset"
    say "sums:     $base/SHA256SUMS"
    say "target:   ${MOZART_INSTALL_DIR:-${HOME:-~}/.local/bin}/mozart$exe"
    return 0
  fi

  DOWNLOADER=$(pick_downloader)
  HASHER=$(pick_hasher)
  dir=$(pick_dir)
  target="$dir/mozart$exe"

  # Temp files live in the install folder so the final mv is an atomic rename on one filesystem.
  tmp=$(mktemp "$dir/.mozart-install.XXXXXX" 2>/dev/null) || tmp="$dir/.mozart-install.$$"
  sums="$tmp.sums"
  # Signals skip the EXIT trap in some shells, so each gets its own cleanup (PIPE: output piped to a closed reader).
  trap 'rm -f "$tmp" "$sums"' EXIT
  trap 'rm -f "$tmp" "$sums"; exit 130' INT TERM
  trap 'rm -f "$tmp" "$sums"; exit 1' HUP PIPE

  say "mozart: installing ${version:+v$version }for $platform from $base"
  download "$base/SHA256SUMS" "$sums"
  want=$(expected_sum "$sums" "$asset")
  [ -n "$want" ] || die "SHA256SUMS at $base has no entry for $asset" "nothing was installed"

  if [ -f "$target" ] && [ "$(sha256_of "$target")" = "$want" ]; then
    chmod 755 "$target"
    say "mozart is already up to date at $target (checksum matches)"
    path_hint "$dir"
    return 0
  fi

  download "$base/$asset" "$tmp"
  got=$(sha256_of "$tmp")
  if [ "$got" != "$want" ]; then
    die "checksum mismatch for $asset" "expected $want" "got      $got" "the download is corrupt or was tampered with; nothing was installed"
  fi
  chmod 755 "$tmp"
  mv -f "$tmp" "$target"

  say "installed $target"
  if installed=$("$target" --version </dev/null 2>/dev/null); then
    say "$installed"
  elif [ "$platform" = linux-x64-musl ]; then
    # Bun's musl runtime links libstdc++ dynamically; Alpine does not ship it by default.
    say "note: $target did not start; the musl build needs libstdc++ and libgcc (Alpine: apk add libstdc++ libgcc)"
  fi
  path_hint "$dir"
}

main "$@"
