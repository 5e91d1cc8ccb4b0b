//! No function of the library takes a name DataFusion already uses: registering it would
//! silently replace DataFusion's own.

use std::collections::HashSet;

use datafusion::prelude::SessionContext;

#[test]
fn no_function_name_is_datafusions() {
    let ctx = SessionContext::new();
    let state = ctx.state();
    let mut taken: HashSet<String> = HashSet::new();
    taken.extend(state.scalar_functions().keys().cloned());
    taken.extend(state.aggregate_functions().keys().cloned());
    taken.extend(state.window_functions().keys().cloned());
    taken.extend(state.table_functions().keys().cloned());
    // Aliases too: `register_udf` replaces a function by any of its names.
    for function in state.scalar_functions().values() {
        taken.extend(function.aliases().iter().cloned());
    }
    for function in state.aggregate_functions().values() {
        taken.extend(function.aliases().iter().cloned());
    }
    assert!(
        taken.contains("to_timestamp_millis") && taken.contains("count"),
        "DataFusion's functions are listed"
    );

    let mut ours: Vec<String> = profusion_udfs::scalar_functions()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    ours.extend(
        profusion_udfs::aggregate_functions()
            .iter()
            .map(|f| f.name().to_string()),
    );
    let clashes: Vec<&String> = ours.iter().filter(|name| taken.contains(*name)).collect();
    assert!(
        clashes.is_empty(),
        "these names are DataFusion's: {clashes:?}"
    );
    let distinct: HashSet<&String> = ours.iter().collect();
    assert_eq!(distinct.len(), ours.len(), "a name is used twice: {ours:?}");
}

#[test]
fn every_function_is_documented() {
    let documentation = profusion_udfs::documentation();
    let count =
        profusion_udfs::scalar_functions().len() + profusion_udfs::aggregate_functions().len();
    assert_eq!(documentation.len(), count, "every function is listed");
    for (name, doc) in documentation {
        assert!(!doc.description.is_empty(), "{name} has no description");
        assert!(
            doc.syntax_example.starts_with(&name),
            "{name}: {}",
            doc.syntax_example
        );
        assert!(
            doc.sql_example
                .as_deref()
                .is_some_and(|e| e.contains(&name)),
            "{name} has no example"
        );
        assert!(
            doc.arguments.as_ref().is_some_and(|a| !a.is_empty()),
            "{name} has no arguments documented"
        );
    }
}
