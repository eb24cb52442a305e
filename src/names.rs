//! Closed sets of names (experiment kinds, initialisers) as enums whose one
//! spelling is the variant's identifier in snake_case, the same in YAML
//! (serde), on the command line (clap) and in text and results (strum).

/// Declares such an enum, with `name()`, `all()`, `names()` and `Display`.
#[macro_export]
macro_rules! snake_case_names {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, clap::ValueEnum,
            strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
        )]
        #[serde(rename_all = "snake_case")]
        #[value(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub fn name(self) -> &'static str {
                self.into()
            }

            /// Every variant, in declaration order.
            pub fn all() -> &'static [$name] {
                <$name as strum::VariantArray>::VARIANTS
            }

            /// Every name, for error messages.
            pub fn names() -> Vec<&'static str> {
                Self::all().iter().map(|n| n.name()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
