//! Function identity for functions that hold caches: DataFusion compares and hashes
//! functions to deduplicate expressions, and two instances of such a function are the same
//! function whatever their caches hold.

/// Implements `PartialEq`, `Eq` and `Hash` for a function by its name and signature.
#[macro_export]
macro_rules! function_identity {
    ($function:ty) => {
        impl PartialEq for $function {
            fn eq(&self, other: &Self) -> bool {
                use datafusion::logical_expr::ScalarUDFImpl as _;
                self.name() == other.name() && self.signature() == other.signature()
            }
        }

        impl Eq for $function {}

        impl std::hash::Hash for $function {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                use datafusion::logical_expr::ScalarUDFImpl as _;
                self.name().hash(state);
                self.signature().hash(state);
            }
        }
    };
}
