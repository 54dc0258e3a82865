//! The CPU features a build was compiled for (`scripts/install.sh --cpu LEVEL`, rustc's `-C
//! target-cpu`), checked against the CPU it runs on: the binary names what the CPU lacks and
//! stops, where it would otherwise die at the first instruction the CPU does not have
//! (SIGILL, with no word of why). The default build assumes nothing above the x86-64
//! baseline, and misses nothing anywhere.

/// Defines, from one list of feature names (rustc's and `is_x86_feature_detected!`'s, the
/// same), [`LEVEL_FEATURES`], [`compiled`] and [`detected`].
#[cfg(target_arch = "x86_64")]
macro_rules! level_features {
    ($($f:tt),* $(,)?) => {
        /// The x86-64 features above the baseline that the `x86-64-v2` to `x86-64-v4`
        /// levels assume. (A `native` build may use others besides, which this does not
        /// name: build it on the machine that runs it.)
        pub const LEVEL_FEATURES: &[&str] = &[$($f),*];

        /// The features of [`LEVEL_FEATURES`] this build was compiled to use
        /// (`cfg!(target_feature)`).
        pub fn compiled() -> Vec<&'static str> {
            let mut on = Vec::new();
            $(
                if cfg!(target_feature = $f) {
                    on.push($f);
                }
            )*
            on
        }

        /// Whether the CPU this runs on has `feature` (one of [`LEVEL_FEATURES`]; any
        /// other name: `false`).
        pub fn detected(feature: &str) -> bool {
            match feature {
                $($f => std::arch::is_x86_feature_detected!($f),)*
                _ => false,
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
level_features!(
    "sse3",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "popcnt",
    "cmpxchg16b",
    "avx",
    "avx2",
    "bmi1",
    "bmi2",
    "fma",
    "f16c",
    "lzcnt",
    "movbe",
    "xsave",
    "avx512f",
    "avx512bw",
    "avx512cd",
    "avx512dq",
    "avx512vl",
);

/// Of the features `compiled` names, those `has` says the CPU lacks, in their order.
pub fn missing_from(compiled: &[&'static str], has: impl Fn(&str) -> bool) -> Vec<&'static str> {
    compiled.iter().copied().filter(|f| !has(f)).collect()
}

/// The features this build was compiled to use that the CPU it runs on lacks: empty for a
/// build that can run here.
pub fn missing() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        missing_from(&compiled(), detected)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// A CPU without AVX2 and BMI2 misses those of a build for them, in order, and nothing
    /// it has.
    #[test]
    fn names_what_the_cpu_lacks() {
        let build = ["sse4.2", "avx2", "bmi2", "movbe"];
        let lacks = |f: &str| f == "avx2" || f == "bmi2";
        assert_eq!(missing_from(&build, |f| !lacks(f)), ["avx2", "bmi2"]);
        assert!(missing_from(&build, |_| true).is_empty());
        assert!(missing_from(&[], |_| false).is_empty());
    }

    /// Each feature name is one the detector knows: the names a build is compiled for agree
    /// with what the CPU that runs this test reports for them (it runs the test, so it has
    /// them), and `detected` gives the same answer as the standard detector for a few
    /// spelled out here on their own.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no CPUID: it detects no feature")]
    fn detection_agrees_with_the_standard_detector() {
        assert!(missing().is_empty(), "{:?}", missing());
        assert_eq!(
            detected("sse4.2"),
            std::arch::is_x86_feature_detected!("sse4.2")
        );
        assert_eq!(
            detected("avx2"),
            std::arch::is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            detected("movbe"),
            std::arch::is_x86_feature_detected!("movbe")
        );
        assert_eq!(
            detected("avx512f"),
            std::arch::is_x86_feature_detected!("avx512f")
        );
        assert!(!detected("no-such-feature"));
        for &f in LEVEL_FEATURES {
            // A name the match does not know would read as absent on every CPU; the
            // baseline-level ones (SSE3, SSSE3, SSE4.x, POPCNT, CMPXCHG16B) every CPU that
            // runs DPDK has.
            if matches!(
                f,
                "sse3" | "ssse3" | "sse4.1" | "sse4.2" | "popcnt" | "cmpxchg16b"
            ) {
                assert!(detected(f), "{f}");
            }
        }
    }
}
