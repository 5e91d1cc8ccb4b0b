//! `\h` and `\h name`: the session's functions, and one function's documentation
//! (description, syntax, arguments, example), from DataFusion's own `Documentation`.

use std::collections::BTreeMap;
use std::fmt::Write;

use datafusion::logical_expr::Documentation;

use crate::pipeline::Engine;

/// Every function the session knows, by name, with its kind and documentation.
fn functions(engine: &Engine) -> BTreeMap<String, (&'static str, Option<Documentation>)> {
    let state = engine.context().state();
    let mut all = BTreeMap::new();
    for (name, f) in state.scalar_functions() {
        all.insert(name.clone(), ("scalar", f.documentation().cloned()));
    }
    for (name, f) in state.aggregate_functions() {
        all.insert(name.clone(), ("aggregate", f.documentation().cloned()));
    }
    for (name, f) in state.window_functions() {
        all.entry(name.clone())
            .or_insert(("window", f.documentation().cloned()));
    }
    for name in state.table_functions().keys() {
        all.entry(name.clone()).or_insert(("table", None));
    }
    // Functions whose wrappers do not carry their documentation (async UDFs).
    for (name, doc) in profusion_udfs::documentation() {
        if let Some(entry) = all.get_mut(&name)
            && entry.1.is_none()
        {
            entry.1 = Some(doc);
        }
    }
    all
}

/// The names `\h` lists and Tab completes.
pub fn function_names(engine: &Engine) -> Vec<String> {
    functions(engine).into_keys().collect()
}

/// `\h`: the function names, by kind; `\h name`: one function's documentation.
pub fn help(engine: &Engine, name: Option<&str>) -> Result<String, String> {
    let all = functions(engine);
    let Some(name) = name else {
        let mut out = String::new();
        for kind in ["scalar", "aggregate", "window", "table"] {
            let names: Vec<&str> = all
                .iter()
                .filter(|(_, (k, _))| *k == kind)
                .map(|(n, _)| n.as_str())
                .collect();
            let _ = writeln!(out, "{kind} functions ({}):", names.len());
            let _ = writeln!(out, "{}\n", wrap(&names.join(", "), 100));
        }
        out.push_str("\\h NAME shows one function's documentation.\n");
        return Ok(out);
    };
    let key = name.to_ascii_lowercase();
    let (kind, doc) = all
        .get(&key)
        .or_else(|| all.get(name))
        .ok_or_else(|| format!("no function named '{name}' (\\h lists them)"))?;
    let mut out = format!("{key} ({kind} function)\n");
    match doc {
        None => out.push_str("No documentation.\n"),
        Some(doc) => {
            let _ = writeln!(out, "\n{}\n", doc.description.trim());
            let _ = writeln!(out, "Syntax: {}", doc.syntax_example);
            if let Some(arguments) = &doc.arguments {
                out.push_str("\nArguments:\n");
                for (argument, description) in arguments {
                    let _ = writeln!(out, "  {argument}: {}", description.trim());
                }
            }
            if let Some(example) = &doc.sql_example {
                let _ = writeln!(out, "\nExample:\n{}", example.trim());
            }
        }
    }
    Ok(out)
}

/// `text` broken into lines of at most about `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + word.len() + 1 > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
