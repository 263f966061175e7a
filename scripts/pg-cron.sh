#!/usr/bin/env bash
# pg_cron for the live PgCronScheduler tests (packages/pgflows/test/SchedulerPgCron.pgcron.test.ts,
# which start a PostgreSQL 15 of their own from /usr/lib/postgresql/15/bin). .ci/run runs it; it can
# also be run by hand, from any directory: `scripts/pg-cron.sh`.
#
# What it does, best effort (it always exits 0; whatever fails only means the live tests use an
# older pg_cron, or are skipped with one line):
#
# 1. pg_cron 1.5 or later already installed for PostgreSQL 15: nothing.
# 2. No PostgreSQL 15 server: installs Debian's postgresql-15-cron with apt-get (pg_cron 1.4.2 on
#    Debian 12), which brings the server along, then goes on.
# 3. Builds pg_cron 1.6.7 (schedules of seconds) from the upstream source that Debian's package
#    pool holds (sha256-checked), against PostgreSQL 15, and installs it over any older pg_cron.
#    The server headers come from postgresql-server-dev-15, unpacked with `apt-get download` and
#    `dpkg -x` into .tmp/ when the package is not installed (installing it would pull clang-14
#    and llvm-14-dev, for JIT bitcode we do not build); the files are compiled with cc directly,
#    with pg_config's flags, and linked against the installed libpq.so.5.
# 4. The build failed and there is no pg_cron at all: installs postgresql-15-cron (1.4.2).
#
# Each decision is one `ci: pg_cron: ...` line; the output of downloads, apt-get and the compiler
# goes to .tmp/pg-cron.log, whose tail is printed when something fails. Commands that need root
# run through `sudo -n` when the script is not run as root.
set -uo pipefail

pg_major=15
cron_version=1.6.7
cron_sha256=d950bc29155f31017567e23a31d268ff672e98276c0e9d062512fb7870351f03
cron_url="http://deb.debian.org/debian/pool/main/p/pg-cron/pg-cron_${cron_version}.orig.tar.gz"

bin_dir="/usr/lib/postgresql/$pg_major/bin"
lib_dir="/usr/lib/postgresql/$pg_major/lib"
ext_dir="/usr/share/postgresql/$pg_major/extension"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || exit 0
work="$root/.tmp/pg-cron"
log="$root/.tmp/pg-cron.log"

as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo -n); fi

say() { echo "ci: pg_cron: $*"; }

elapsed_since() { # seconds since $1 (an $EPOCHREALTIME), one decimal
  local now="$EPOCHREALTIME" then="$1"
  awk -v a="${then/,/.}" -v b="${now/,/.}" 'BEGIN { printf "%.1f", b - a }'
}

show_log_tail() {
  [ -s "$log" ] || return 0
  say "last lines of ${log#"$root/"}:"
  tail -n 25 "$log" 2>/dev/null | sed 's/^/    /'
}

# pg_cron's default_version for PostgreSQL 15 (e.g. 1.4-1, 1.6), or nothing when it is not installed.
installed_version() {
  [ -f "$lib_dir/pg_cron.so" ] && [ -f "$ext_dir/pg_cron.control" ] || return 0
  sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$ext_dir/pg_cron.control" | head -n 1
}

# Whether a pg_cron version has schedules of seconds (1.5 or later).
has_seconds() {
  local major minor rest
  major="${1%%.*}"
  rest="${1#*.}"
  minor="${rest%%[.-]*}"
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 5 ]; }
}

run_root() { ${as_root[@]+"${as_root[@]}"} "$@"; }

apt_get() { run_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# Runs an apt-get command; when it fails, refreshes the package lists once and runs it again.
apt_retry() {
  "$@" >>"$log" 2>&1 && return 0
  apt_get update >>"$log" 2>&1 || return 1
  "$@" >>"$log" 2>&1
}

# Debian's postgresql-15-cron (pg_cron 1.4.2 on Debian 12, and PostgreSQL 15 with it).
install_debian_package() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "there is no apt-get to install postgresql-$pg_major-cron with"
    return 1
  fi
  if apt_retry apt_get install -y "postgresql-$pg_major-cron" && [ -f "$lib_dir/pg_cron.so" ]; then
    say "installed Debian's postgresql-$pg_major-cron (pg_cron $(installed_version)) with apt-get"
    return 0
  fi
  say "could not install postgresql-$pg_major-cron with apt-get"
  show_log_tail
  return 1
}

# The pg_cron source, sha256-checked, unpacked into $work/src.
fetch_source() {
  local tarball="$work/pg-cron_${cron_version}.orig.tar.gz"
  if [ -f "$tarball" ] && echo "$cron_sha256  $tarball" | sha256sum -c --status 2>/dev/null; then
    say "source: reusing ${tarball#"$root/"} (sha256 checked)"
  else
    say "source: downloading $cron_url"
    rm -f "$tarball"
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 300 -o "$tarball.part" "$cron_url" >>"$log" 2>&1 ||
      { say "could not download $cron_url"; return 1; }
    if ! echo "$cron_sha256  $tarball.part" | sha256sum -c --status; then
      say "the download's sha256 is $(sha256sum "$tarball.part" | cut -d' ' -f1), not $cron_sha256: not using it"
      rm -f "$tarball.part"
      return 1
    fi
    mv -f "$tarball.part" "$tarball"
  fi
  rm -rf "$work/src" && mkdir -p "$work/src" &&
    tar -xzf "$tarball" -C "$work/src" --strip-components=1 >>"$log" 2>&1 ||
    { say "could not unpack ${tarball#"$root/"}"; return 1; }
}

# Sets `includes` to the -I options for PostgreSQL's server and libpq headers.
find_headers() {
  local server="/usr/include/postgresql/$pg_major/server" pgdev version pkg want
  includes=()
  if [ -f "$server/postgres.h" ] && [ -f /usr/include/postgresql/libpq-fe.h ]; then
    say "headers: using the installed postgresql-server-dev-$pg_major and libpq-dev"
    includes=(-I"$server" -I/usr/include/postgresql/internal -I/usr/include/postgresql)
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    say "headers: no postgresql-server-dev-$pg_major, and no apt-get and dpkg to unpack it with"
    return 1
  fi
  version="$(dpkg-query -W -f='${Version}' "postgresql-$pg_major" 2>/dev/null)"
  pgdev="$work/pgdev-${version:-unknown}"
  if [ -f "$pgdev/usr/include/postgresql/$pg_major/server/postgres.h" ] &&
    [ -f "$pgdev/usr/include/postgresql/libpq-fe.h" ]; then
    say "headers: reusing postgresql-server-dev-$pg_major and libpq-dev unpacked in ${pgdev#"$root/"}"
  else
    say "headers: unpacking postgresql-server-dev-$pg_major ${version:-(any version)} and libpq-dev into" \
      "${pgdev#"$root/"} (apt-get download, dpkg -x; installing it would pull clang-14 and llvm-14-dev)"
    rm -rf "$pgdev" "$work/debs" && mkdir -p "$pgdev" "$work/debs" || return 1
    for pkg in "postgresql-server-dev-$pg_major" libpq-dev; do
      want="$pkg"
      # The headers of the installed server's (and libpq's) exact version, when the mirror has it.
      if [ "$pkg" = libpq-dev ]; then version="$(dpkg-query -W -f='${Version}' libpq5 2>/dev/null)"; fi
      if [ -n "$version" ]; then want="$pkg=$version"; fi
      (cd "$work/debs" && apt_retry apt-get download "$want") ||
        { [ "$want" != "$pkg" ] && (cd "$work/debs" && apt_retry apt-get download "$pkg"); } ||
        { say "headers: could not download $pkg with apt-get"; return 1; }
    done
    for pkg in "$work"/debs/*.deb; do
      dpkg -x "$pkg" "$pgdev" >>"$log" 2>&1 || { say "headers: could not unpack ${pkg##*/}"; return 1; }
    done
    [ -f "$pgdev/usr/include/postgresql/$pg_major/server/postgres.h" ] ||
      { say "headers: postgres.h is not in the unpacked packages"; return 1; }
  fi
  includes=(
    -I"$pgdev/usr/include/postgresql/$pg_major/server"
    -I"$pgdev/usr/include/postgresql/internal"
    -I"$pgdev/usr/include/postgresql"
  )
}

# A C compiler: cc, or gcc installed with apt-get (without recommends) when there is none.
find_compiler() {
  if command -v cc >/dev/null 2>&1; then
    compiler=cc
    say "compiler: $(cc --version 2>/dev/null | head -n 1)"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "compiler: there is no C compiler, and no apt-get to install gcc with"
    return 1
  fi
  say "compiler: there is no C compiler; installing gcc and libc6-dev with apt-get (--no-install-recommends)"
  if apt_retry apt_get install -y --no-install-recommends gcc libc6-dev && command -v cc >/dev/null 2>&1; then
    compiler=cc
    return 0
  fi
  say "compiler: could not install gcc"
  return 1
}

# Compiles $work/src into $work/src/pg_cron.so, as PGXS would (pg_config's flags, without bitcode).
compile() {
  local pg_config="$bin_dir/pg_config" cflags=() cppflags=() ldflags=() file
  local libpq
  if [ -x "$pg_config" ]; then
    read -r -a cflags <<<"$("$pg_config" --cflags) $("$pg_config" --cflags_sl)"
    read -r -a cppflags <<<"$("$pg_config" --cppflags)"
    read -r -a ldflags <<<"$("$pg_config" --ldflags)"
  else
    cflags=(-O2 -fno-strict-aliasing -fwrapv -fexcess-precision=standard -fPIC)
    cppflags=(-D_GNU_SOURCE)
  fi
  libpq=""
  for file in /usr/lib/*/libpq.so.5 /usr/lib/libpq.so.5; do
    if [ -f "$file" ]; then libpq="$file" && break; fi
  done
  if [ -z "$libpq" ]; then
    say "build: there is no libpq.so.5 (package libpq5) to link pg_cron against"
    return 1
  fi
  (
    cd "$work/src" || exit 1
    for file in src/*.c; do
      echo "+ $compiler ... -c $file" >>"$log"
      "$compiler" "${cflags[@]}" -std=c99 -Wall -Wextra -Wno-unused-parameter -Wno-uninitialized \
        -Wno-implicit-fallthrough -Iinclude "${includes[@]}" "${cppflags[@]}" -c "$file" -o "${file%.c}.o" >>"$log" 2>&1 ||
        exit 1
    done
    echo "+ $compiler -shared -o pg_cron.so src/*.o -l:libpq.so.5" >>"$log"
    "$compiler" -shared -o pg_cron.so src/*.o "${ldflags[@]}" -l:libpq.so.5 >>"$log" 2>&1 || exit 1
    # pg_cron--1.0.sql is pg_cron.sql (PGXS's DATA_built); the updates take it to default_version.
    cp pg_cron.sql pg_cron--1.0.sql
  ) || { say "build: compiling pg_cron $cron_version failed"; return 1; }
  if command -v nm >/dev/null 2>&1 && ! nm -D --defined-only "$work/src/pg_cron.so" | grep -q Pg_magic_func; then
    say "build: pg_cron.so has no Pg_magic_func: not a PostgreSQL module"
    return 1
  fi
}

# Installs the build: the SQL scripts, then pg_cron.so (renamed into place), then the control file.
install_build() {
  local src="$work/src"
  run_root install -d "$lib_dir" "$ext_dir" >>"$log" 2>&1 &&
    run_root install -m 0644 "$src"/pg_cron--*.sql "$ext_dir/" >>"$log" 2>&1 &&
    run_root install -m 0755 "$src/pg_cron.so" "$lib_dir/pg_cron.so.new" >>"$log" 2>&1 &&
    run_root mv -f "$lib_dir/pg_cron.so.new" "$lib_dir/pg_cron.so" >>"$log" 2>&1 &&
    run_root install -m 0644 "$src/pg_cron.control" "$ext_dir/pg_cron.control" >>"$log" 2>&1 ||
    { say "install: could not copy the build into $lib_dir and $ext_dir${as_root[*]:+ (with sudo -n)}"; return 1; }
}

build_and_install() {
  fetch_source && find_headers && find_compiler && compile && install_build
}

main() {
  local current started
  current="$(installed_version)"
  if [ -n "$current" ] && has_seconds "$current"; then
    say "pg_cron $current is installed for PostgreSQL $pg_major ($lib_dir/pg_cron.so), with schedules of seconds;" \
      "nothing to do"
    return 0
  fi

  mkdir -p "$work" || { say "cannot create $work; the pg_cron live tests will be skipped"; return 0; }
  : >"$log"

  if [ ! -x "$bin_dir/postgres" ]; then
    say "there is no PostgreSQL $pg_major in $bin_dir: installing postgresql-$pg_major-cron, which brings it"
    install_debian_package ||
      { say "no PostgreSQL $pg_major and no pg_cron; the pg_cron live tests will be skipped"; return 0; }
    current="$(installed_version)"
    if [ -n "$current" ] && has_seconds "$current"; then return 0; fi
  fi

  if [ -n "$current" ]; then
    say "pg_cron $current is installed, without schedules of seconds: building pg_cron $cron_version from source"
  else
    say "pg_cron is not installed for PostgreSQL $pg_major: building pg_cron $cron_version from source"
  fi
  started="$EPOCHREALTIME"
  if build_and_install; then
    current="$(installed_version)"
    say "installed pg_cron $cron_version (default_version $current) in $(elapsed_since "$started") s" \
      "(download, build and install; log in ${log#"$root/"})"
    return 0
  fi
  show_log_tail

  current="$(installed_version)"
  if [ -n "$current" ]; then
    say "keeping pg_cron $current: the live tests run, with a once-a-minute schedule instead of seconds"
    return 0
  fi
  say "falling back to Debian's postgresql-$pg_major-cron"
  if install_debian_package; then
    say "the live tests run with pg_cron $(installed_version), with a once-a-minute schedule instead of seconds"
  else
    say "no pg_cron; the pg_cron live tests will be skipped"
  fi
  return 0
}

main
exit 0
