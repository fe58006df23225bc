//! Build helpers for wasmhook plugins.
//!
//! - `componentize IN.wasm OUT.wasm` turns a core module built for
//!   `wasm32-unknown-unknown` (carrying wit-bindgen's `component-type` custom
//!   section) into a component, validating the result.
//! - `inspect FILE.wasm` prints what a component imports and exports (the
//!   names the host links against), or a core module's imports and custom
//!   sections.
//!
//! The wit-component and wasmparser versions follow the wasm-tools release
//! that wasmtime 48 (the host's engine) is built on, so a component this tool
//! writes is one the host's parser knows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use wasmparser::{Parser, Payload};
use wit_component::{ComponentEncoder, DecodedWasm, WitPrinter};
use wit_parser::WorldItem;

const USAGE: &str = "\
usage:
  xtask componentize IN.wasm OUT.wasm   core module (wasm32-unknown-unknown) -> component
  xtask inspect [--wit] FILE.wasm...    print a component's imports and exports
                                        (--wit: also its whole WIT world)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("componentize") if args.len() == 3 => {
            componentize(Path::new(&args[1]), Path::new(&args[2]))
        }
        Some("inspect") if args.len() >= 2 => {
            let wit = args[1] == "--wit";
            let files = &args[if wit { 2 } else { 1 }..];
            if files.is_empty() {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            files
                .iter()
                .try_for_each(|file| inspect(Path::new(file), wit))
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Wraps a core module into a component, reading the component's world from
/// the module's `component-type` custom section(s).
fn componentize(input: &Path, output: &Path) -> Result<()> {
    let bytes = read(input)?;
    if Parser::is_component(&bytes) {
        bail!(
            "{} is already a component (built for wasm32-wasip2?): copy it as it is",
            input.display()
        );
    }
    if !Parser::is_core_wasm(&bytes) {
        bail!("{} is not a WebAssembly module", input.display());
    }
    let facts = core_facts(&bytes).with_context(|| format!("cannot parse {}", input.display()))?;
    if facts.component_type_sections == 0 {
        bail!(
            "{} has no `component-type` custom section: build it with wasmhook-sdk \
             (one role feature enabled) or wit-bindgen, and make sure the linker kept the section",
            input.display()
        );
    }
    if let Some(module) = facts.import_modules.iter().find(|m| m.starts_with("wasi_")) {
        bail!(
            "{} imports `{module}`: it was built for a WASI preview 1 target, which needs an \
             adapter; build for wasm32-unknown-unknown (or wasm32-wasip2, which needs no componentize step)",
            input.display()
        );
    }

    let component = ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .with_context(|| format!("cannot read the component metadata of {}", input.display()))?
        .encode()
        .with_context(|| format!("cannot make a component of {}", input.display()))?;

    write_atomically(output, &component)?;
    println!(
        "componentized {} ({} bytes) -> {} ({} bytes)",
        input.display(),
        bytes.len(),
        output.display(),
        component.len()
    );
    Ok(())
}

/// Writes through a temporary file beside `path`, so a failed run never leaves
/// a truncated plugin where the host would load it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// What `componentize` checks in a core module before encoding it.
struct CoreFacts {
    import_modules: Vec<String>,
    imports: Vec<String>,
    exports: Vec<String>,
    custom_sections: Vec<(String, usize)>,
    component_type_sections: usize,
}

fn core_facts(bytes: &[u8]) -> Result<CoreFacts> {
    let mut facts = CoreFacts {
        import_modules: Vec::new(),
        imports: Vec::new(),
        exports: Vec::new(),
        custom_sections: Vec::new(),
        component_type_sections: 0,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    if !facts.import_modules.iter().any(|m| m == import.module) {
                        facts.import_modules.push(import.module.to_string());
                    }
                    facts
                        .imports
                        .push(format!("{} {}", import.module, import.name));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    facts.exports.push(export?.name.to_string());
                }
            }
            Payload::CustomSection(reader) => {
                if reader.name().starts_with("component-type") {
                    facts.component_type_sections += 1;
                }
                facts
                    .custom_sections
                    .push((reader.name().to_string(), reader.data().len()));
            }
            _ => {}
        }
    }
    Ok(facts)
}

fn inspect(path: &Path, print_wit: bool) -> Result<()> {
    let bytes = read(path)?;
    if Parser::is_core_wasm(&bytes) {
        return inspect_core(path, &bytes);
    }
    if !Parser::is_component(&bytes) {
        bail!(
            "{} is not a WebAssembly module or component",
            path.display()
        );
    }
    println!("{}: component, {} bytes", path.display(), bytes.len());

    // The exact top-level names, as a host's linker sees them.
    let (imports, exports) =
        top_level_names(&bytes).with_context(|| format!("cannot parse {}", path.display()))?;

    // The same items with their functions, from the embedded WIT.
    let decoded = wit_component::decode(&bytes)
        .with_context(|| format!("cannot decode the WIT of {}", path.display()))?;
    let DecodedWasm::Component(resolve, world_id) = decoded else {
        bail!(
            "{} decodes as a WIT package, not a component",
            path.display()
        );
    };
    let world = &resolve.worlds[world_id];
    let functions = |item: &WorldItem| -> String {
        match item {
            WorldItem::Interface { id, .. } => {
                let names: Vec<&str> = resolve.interfaces[*id]
                    .functions
                    .keys()
                    .map(String::as_str)
                    .collect();
                if names.is_empty() {
                    "types only".to_string()
                } else {
                    names.join(", ")
                }
            }
            WorldItem::Function(_) => "function".to_string(),
            WorldItem::Type { .. } => "type".to_string(),
        }
    };
    let describe = |names: &[(String, &'static str)], items: Vec<(String, String)>| {
        for (name, kind) in names {
            let detail = items
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| d.as_str())
                .unwrap_or("");
            println!("  {name} ({kind}): {detail}");
        }
    };
    println!("imports:");
    describe(
        &imports,
        world
            .imports
            .iter()
            .map(|(key, item)| (resolve.name_world_key(key), functions(item)))
            .collect(),
    );
    println!("exports:");
    describe(
        &exports,
        world
            .exports
            .iter()
            .map(|(key, item)| (resolve.name_world_key(key), functions(item)))
            .collect(),
    );
    if print_wit {
        let main = world
            .package
            .with_context(|| format!("the world of {} has no package", path.display()))?;
        let nested: Vec<_> = resolve
            .packages
            .iter()
            .map(|(id, _)| id)
            .filter(|id| *id != main)
            .collect();
        let mut printer = WitPrinter::default();
        printer
            .print(&resolve, main, &nested)
            .with_context(|| format!("cannot print the WIT of {}", path.display()))?;
        println!("wit:\n{}", printer.output);
    }
    Ok(())
}

type Names = Vec<(String, &'static str)>;

/// The component's own imports and exports, skipping nested modules and
/// components (whose sections `parse_all` also yields).
fn top_level_names(bytes: &[u8]) -> Result<(Names, Names)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import?;
                    imports.push((import.name.name.to_string(), type_ref_kind(import.ty)));
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export?;
                    exports.push((export.name.name.to_string(), external_kind(export.kind)));
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn type_ref_kind(ty: wasmparser::ComponentTypeRef) -> &'static str {
    use wasmparser::ComponentTypeRef as T;
    match ty {
        T::Module(_) => "module",
        T::Func(_) => "func",
        T::Value(_) => "value",
        T::Type(_) => "type",
        T::Instance(_) => "instance",
        T::Component(_) => "component",
    }
}

fn external_kind(kind: wasmparser::ComponentExternalKind) -> &'static str {
    use wasmparser::ComponentExternalKind as K;
    match kind {
        K::Module => "module",
        K::Func => "func",
        K::Value => "value",
        K::Type => "type",
        K::Instance => "instance",
        K::Component => "component",
    }
}

fn inspect_core(path: &Path, bytes: &[u8]) -> Result<()> {
    let facts = core_facts(bytes).with_context(|| format!("cannot parse {}", path.display()))?;
    println!("{}: core module, {} bytes", path.display(), bytes.len());
    println!("imports:");
    for import in &facts.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &facts.exports {
        println!("  {export}");
    }
    println!("custom sections:");
    for (name, len) in &facts.custom_sections {
        println!("  {name} ({len} bytes)");
    }
    if facts.component_type_sections == 0 {
        println!("note: no component-type section, so `componentize` cannot wrap this module");
    }
    Ok(())
}
