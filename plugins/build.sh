#!/usr/bin/env bash
# Builds every wasmhook plugin into plugins/dist/NAME.wasm (a WebAssembly
# component) plus plugins/dist/NAME.toml (its sample config).
#
#   plugins/build.sh              build all plugins
#   plugins/build.sh NAME...      build only these
#
# Rust plugins (every plugins/*/Cargo.toml):
#   - preferred: rustup's wasm32-wasip2 target (added if missing), which makes
#     a component directly;
#   - fallback (rustup cannot get wasm32-wasip2, e.g. offline CI): Debian's
#     rustc-web 1.96 with -Zbuild-std for wasm32-unknown-unknown, then
#     `xtask componentize`. Installed with apt-get when missing.
# Python plugins (every plugins/*/app.py): componentize-py 0.25.1, installed
# with pip when missing; the world is read from the exported class name.
# JavaScript and TypeScript plugins (every plugins/*/package.json): the
#   toolchain pinned in plugins/.npm-tools/package-lock.json (componentize-js
#   0.23.0; jco 1.35.0 and TypeScript 7.0.2 for TypeScript plugins), installed
#   there with `npm ci` when the lock changes. A plugin's package.json names
#   its entry module ("main") and its world ("wasmhook": {"world": ...}); its
#   "compile" script, if it has one, runs first (TypeScript: WIT types, tsc).
#   componentize-js runs with its default flags. Skipped, with a note, when
#   node or npm is missing; Node.js 20 or later is needed.
#
# Environment:
#   WASMHOOK_PLUGIN_TARGET  auto (default) | wasip2 | unknown (force the fallback)
#   JOBS                    cargo -j (default 2)
#   PY_STUB_WASI=1          build Python plugins with `componentize-py --stub-wasi`:
#                           no wasi:* imports (WASI calls trap; Python's PRNG seed
#                           is fixed at build time)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dist="$here/dist"
target_dir="$here/target"
wit_dir="$root/wit"
jobs="${JOBS:-2}"
mode="${WASMHOOK_PLUGIN_TARGET:-auto}"
componentize_py_version="0.25.1"
debian_rustc=/usr/bin/rustc
debian_cargo=/usr/bin/cargo
wasm_ld=/usr/lib/llvm-19/bin/wasm-ld

step() { printf '\n==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() {
  printf '\nbuild.sh: error: %s\n' "$*" >&2
  exit 1
}
# Prints a command, then runs it.
run() {
  printf '    $ %s\n' "$*" >&2
  "$@"
}
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- what to build

rust_plugins=()
python_plugins=()
js_plugins=()
for manifest in "$here"/*/Cargo.toml; do
  [ -e "$manifest" ] || continue
  rust_plugins+=("$(basename "$(dirname "$manifest")")")
done
for app in "$here"/*/app.py; do
  [ -e "$app" ] || continue
  python_plugins+=("$(basename "$(dirname "$app")")")
done
# The glob skips dot folders, so plugins/.npm-tools is not a plugin.
for package in "$here"/*/package.json; do
  [ -e "$package" ] || continue
  js_plugins+=("$(basename "$(dirname "$package")")")
done

if [ "$#" -gt 0 ]; then
  wanted_rust=()
  wanted_python=()
  wanted_js=()
  for name in "$@"; do
    if [ -f "$here/$name/Cargo.toml" ]; then
      wanted_rust+=("$name")
    elif [ -f "$here/$name/app.py" ]; then
      wanted_python+=("$name")
    elif [ -f "$here/$name/package.json" ]; then
      wanted_js+=("$name")
    else
      die "no plugin named '$name' (expected $here/$name/Cargo.toml, app.py or package.json)"
    fi
  done
  rust_plugins=("${wanted_rust[@]+"${wanted_rust[@]}"}")
  python_plugins=("${wanted_python[@]+"${wanted_python[@]}"}")
  js_plugins=("${wanted_js[@]+"${wanted_js[@]}"}")
fi

mkdir -p "$dist"

# The package name in a plugin's Cargo.toml (the first `name = ` line).
package_name() {
  sed -n 's/^name *= *"\(.*\)"/\1/p' "$here/$1/Cargo.toml" | head -n 1
}

# Copies the plugin's sample config, if it has one, to dist/NAME.toml.
install_config() {
  local name="$1"
  if [ -f "$here/$name/$name.toml" ]; then
    cp "$here/$name/$name.toml" "$dist/$name.toml"
  else
    info "note: $name has no sample $name.toml"
  fi
}

# ------------------------------------------------------------ Rust: toolchain

# True when rustup has (or can get) the wasm32-wasip2 standard library.
wasip2_available() {
  have rustup || return 1
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    return 0
  fi
  step "Adding rustup target wasm32-wasip2"
  # `timeout` keeps an unreachable dist server from hanging the build.
  if have timeout; then
    run timeout 120 rustup target add wasm32-wasip2 || return 1
  else
    run rustup target add wasm32-wasip2 || return 1
  fi
}

debian_toolchain_ready() {
  [ -x "$debian_rustc" ] && [ -x "$debian_cargo" ] && [ -x "$wasm_ld" ] &&
    [ -d /usr/lib/rustlib/src/rust/library ] &&
    "$debian_rustc" --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]'
}

install_debian_toolchain() {
  debian_toolchain_ready && return 0
  have apt-get || die "the fallback needs Debian's rustc-web, cargo-web, rust-web-src and lld-19, \
and apt-get is not here. Install rustup and run 'rustup target add wasm32-wasip2' instead."
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    have sudo || die "installing rustc-web needs root (or sudo)"
    sudo=(sudo)
  fi
  step "Installing Debian's rustc-web toolchain (rustc 1.96 + std source + wasm-ld)"
  run "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
    die "apt-get update failed"
  run "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q rustc-web cargo-web rust-web-src lld-19 ||
    die "apt-get install rustc-web cargo-web rust-web-src lld-19 failed"
  debian_toolchain_ready || die "after installing rustc-web: expected rustc 1.96+ at $debian_rustc, \
cargo at $debian_cargo, wasm-ld at $wasm_ld and std source in /usr/lib/rustlib/src/rust"
}

xtask_bin="$root/xtask/target/release/xtask"
build_xtask() {
  step "Building xtask (componentize)"
  have cargo || die "cargo is needed to build xtask"
  run cargo build --release --quiet -j "$jobs" --manifest-path "$root/xtask/Cargo.toml" ||
    die "building xtask failed"
}

# ------------------------------------------------------------ Rust: plugins

build_rust_wasip2() {
  local name="$1" crate
  crate="$(package_name "$name" | tr - _)"
  step "Building $name (wasm32-wasip2)"
  # One package per invocation: the SDK's role features must not unify.
  (cd "$here" && run cargo build --release --target wasm32-wasip2 -j "$jobs" -p "$(package_name "$name")") ||
    die "cargo build of $name for wasm32-wasip2 failed (see above)"
  local out="$target_dir/wasm32-wasip2/release/$crate.wasm"
  [ -f "$out" ] || die "cargo built $name but $out is missing"
  cp "$out" "$dist/$name.wasm.tmp" && mv "$dist/$name.wasm.tmp" "$dist/$name.wasm"
  install_config "$name"
}

build_rust_fallback() {
  local name="$1" crate
  crate="$(package_name "$name" | tr - _)"
  step "Building $name (wasm32-unknown-unknown, Debian rustc + build-std)"
  (
    cd "$here"
    export RUSTC="$debian_rustc" RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$wasm_ld"
    run "$debian_cargo" build --release -Zbuild-std=std,panic_abort \
      --target wasm32-unknown-unknown -j "$jobs" -p "$(package_name "$name")"
  ) || die "cargo build of $name for wasm32-unknown-unknown failed (see above)"
  local core="$target_dir/wasm32-unknown-unknown/release/$crate.wasm"
  [ -f "$core" ] || die "cargo built $name but $core is missing"
  run "$xtask_bin" componentize "$core" "$dist/$name.wasm" ||
    die "componentizing $name failed"
  install_config "$name"
}

if [ "${#rust_plugins[@]}" -gt 0 ]; then
  case "$mode" in
    auto)
      if wasip2_available; then
        rust_target=wasip2
      else
        info "rustup cannot provide wasm32-wasip2: using the Debian fallback"
        rust_target=unknown
      fi
      ;;
    wasip2)
      wasip2_available || die "WASMHOOK_PLUGIN_TARGET=wasip2 but 'rustup target add wasm32-wasip2' failed"
      rust_target=wasip2
      ;;
    unknown) rust_target=unknown ;;
    *) die "WASMHOOK_PLUGIN_TARGET must be auto, wasip2 or unknown (not '$mode')" ;;
  esac

  if [ "$rust_target" = wasip2 ]; then
    info "Rust plugins: wasm32-wasip2 with $(cd "$here" && rustc --version)"
    for name in "${rust_plugins[@]}"; do build_rust_wasip2 "$name"; done
  else
    install_debian_toolchain
    info "Rust plugins: wasm32-unknown-unknown with $("$debian_rustc" --version)"
    build_xtask
    for name in "${rust_plugins[@]}"; do build_rust_fallback "$name"; done
  fi
fi

# ------------------------------------------------------------ Python plugins

componentize_py=""
find_componentize_py() {
  local candidate
  for candidate in componentize-py "$target_dir/componentize-py-venv/bin/componentize-py"; do
    if have "$candidate" &&
      [ "$("$candidate" --version 2>/dev/null)" = "componentize-py $componentize_py_version" ]; then
      componentize_py="$(command -v "$candidate")"
      return 0
    fi
  done
  return 1
}

install_componentize_py() {
  find_componentize_py && return 0
  have python3 || die "Python plugins need python3 (for componentize-py)"
  step "Installing componentize-py $componentize_py_version"
  if ! run python3 -m pip install --quiet "componentize-py==$componentize_py_version"; then
    # Debian's system Python refuses global installs (PEP 668): use a venv.
    info "pip refused a global install: using a virtualenv in $target_dir"
    run python3 -m venv "$target_dir/componentize-py-venv" ||
      die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    run "$target_dir/componentize-py-venv/bin/pip" install --quiet \
      "componentize-py==$componentize_py_version" ||
      die "pip install componentize-py==$componentize_py_version failed"
  fi
  hash -r
  find_componentize_py || die "componentize-py $componentize_py_version is installed but not found on PATH"
}

# The world a Python plugin targets, from its exported class name.
python_world() {
  local class
  class="$(sed -n 's/^class \(Condition\|Transform\|Encryption\|Verifier\)(.*/\1/p' "$here/$1/app.py" | head -n 1)"
  [ -n "$class" ] || die "$1/app.py has no 'class Condition|Transform|Encryption|Verifier(...)'"
  printf '%s-plugin' "$(printf '%s' "$class" | tr '[:upper:]' '[:lower:]')"
}

# How a Python plugin was last built, so a change of options rebuilds it.
python_recipe() {
  printf 'componentize-py %s stub-wasi=%s\n' "$componentize_py_version" "${PY_STUB_WASI:-0}"
}

# True when dist/NAME.wasm is newer than the plugin's sources and the WIT,
# and was built with the same recipe.
python_up_to_date() {
  local name="$1" out="$dist/$1.wasm" stamp="$target_dir/python/$1.recipe"
  [ -f "$out" ] && [ -f "$stamp" ] || return 1
  [ "$(cat "$stamp")" = "$(python_recipe)" ] || return 1
  [ -z "$(find "$here/$name" "$wit_dir" -newer "$out" \( -name '*.py' -o -name '*.wit' \) -print -quit)" ]
}

if [ "${#python_plugins[@]}" -gt 0 ]; then
  install_componentize_py
  for name in "${python_plugins[@]}"; do
    world="$(python_world "$name")"
    if python_up_to_date "$name"; then
      step "$name is up to date ($world)"
    else
      step "Building $name (componentize-py, world $world)"
      stub=()
      if [ "${PY_STUB_WASI:-0}" = 1 ]; then stub=(--stub-wasi); fi
      (cd "$here/$name" && run "$componentize_py" -q -d "$wit_dir" -w "$world" \
        componentize "${stub[@]+"${stub[@]}"}" -p . app -o "$dist/$name.wasm.tmp") ||
        die "componentize-py failed for $name"
      mv "$dist/$name.wasm.tmp" "$dist/$name.wasm"
      mkdir -p "$target_dir/python"
      python_recipe >"$target_dir/python/$name.recipe"
    fi
    install_config "$name"
  done
fi

# ------------------------------------------------------------ JavaScript and TypeScript plugins

js_tools="$here/.npm-tools"
componentize_js="$js_tools/node_modules/.bin/componentize-js"
js_built=()

# A field of a plugin's package.json, or nothing.
package_field() {
  node -e 'const p = require(process.argv[1]); const v = process.argv[2].split(".").reduce((o, k) => (o == null ? undefined : o[k]), p); if (v !== undefined) process.stdout.write(String(v));' \
    "$here/$1/package.json" "$2"
}

# The toolchain's lock and Node's version: what the installed tools and the
# components built with them depend on.
js_recipe() {
  printf 'node %s lock %s\n' "$(node --version)" "$(sha256sum "$js_tools/package-lock.json" | cut -d' ' -f1)"
}

# `npm ci` takes about 20 s, so it runs only when the lock (or Node) changed
# since the last install; npm's own cache makes a re-install quicker still.
install_js_tools() {
  local stamp="$js_tools/node_modules/.wasmhook-recipe"
  if [ -x "$componentize_js" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(js_recipe)" ]; then
    return 0
  fi
  step "Installing the JavaScript plugin toolchain (npm ci in $js_tools)"
  (cd "$js_tools" && run npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci in $js_tools failed (see above)"
  js_recipe >"$stamp"
}

# True when dist/NAME.wasm is newer than the plugin's files (but its READMEs)
# and the WIT, and was built with the same toolchain.
js_up_to_date() {
  local name="$1" out="$dist/$1.wasm" stamp="$target_dir/js/$1.recipe"
  [ -f "$out" ] && [ -f "$stamp" ] || return 1
  [ "$(cat "$stamp")" = "$(js_recipe)" ] || return 1
  [ -z "$(find "$here/$name" "$wit_dir" \( -name node_modules -o -name build -o -name generated \) -prune \
    -o -newer "$out" -type f ! -name '*.md' -print -quit)" ]
}

if [ "${#js_plugins[@]}" -gt 0 ]; then
  if ! have node || ! have npm; then
    step "Skipping the JavaScript/TypeScript plugins (${js_plugins[*]}): node and npm are not installed"
    info "install Node.js 20 or later with npm (Debian: apt-get install nodejs npm) and run $0 again"
  else
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$node_major" -ge 20 ] ||
      die "the JavaScript plugin toolchain needs Node.js 20 or later (found $(node --version))"
    install_js_tools
    info "JavaScript plugins: componentize-js $("$componentize_js" --version), node $(node --version)"
    for name in "${js_plugins[@]}"; do
      world="$(package_field "$name" wasmhook.world)"
      main="$(package_field "$name" main)"
      [ -n "$world" ] || die "$name/package.json has no \"wasmhook\": {\"world\": ...} (e.g. condition-plugin)"
      [ -n "$main" ] || die "$name/package.json has no \"main\" (the module to componentize)"
      if js_up_to_date "$name"; then
        step "$name is up to date ($world)"
      else
        if [ -n "$(package_field "$name" scripts.compile)" ]; then
          step "Compiling $name (npm run compile)"
          (cd "$here/$name" && run npm run --silent compile) || die "npm run compile failed for $name"
        fi
        step "Building $name (componentize-js, world $world)"
        (cd "$here/$name" && run "$componentize_js" --wit "$wit_dir" --world-name "$world" \
          --out "$dist/$name.wasm.tmp" "$main") || die "componentize-js failed for $name"
        mv "$dist/$name.wasm.tmp" "$dist/$name.wasm"
        mkdir -p "$target_dir/js"
        js_recipe >"$target_dir/js/$name.recipe"
      fi
      install_config "$name"
      js_built+=("$name")
    done
  fi
fi

# ------------------------------------------------------------ summary

step "Done: $dist"
for name in "${rust_plugins[@]+"${rust_plugins[@]}"}" "${python_plugins[@]+"${python_plugins[@]}"}" \
  "${js_built[@]+"${js_built[@]}"}"; do
  printf '    %-20s %10s bytes\n' "$name.wasm" "$(wc -c <"$dist/$name.wasm" | tr -d ' ')" >&2
done
