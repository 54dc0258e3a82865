//! The configuration parser on arbitrary text: `pipeline_config::parse` and
//! `ConfigDocument::parse` must agree, never panic, and a configuration they accept must
//! build a snapshot (validation catches everything the table builder would refuse, so a
//! file is either refused with a named error or runs).

use dataplane::config::builder_from_config;
use dataplane::tables::PortIndex;
use dataplane::wire::EthernetAddress;
use pipeline_config::ConfigDocument;

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = pipeline_config::parse(&text, "fuzz.toml");
    let doc = ConfigDocument::parse(&text, "fuzz.toml");
    match (&parsed, &doc) {
        (Ok(a), Ok((d, b))) => {
            assert_eq!(a, b, "parse and ConfigDocument::parse agree");
            let again = d.validate().expect("a parsed document validates");
            assert_eq!(&again, a, "a document validates as it parsed");
            let ports: Vec<(PortIndex, EthernetAddress)> = a
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mac = p.mac.map_or([2, 0, 0, 0, 0, i as u8], |m| m.0);
                    (i as PortIndex, EthernetAddress(mac))
                })
                .collect();
            if let Err(e) = builder_from_config(a, &ports).build() {
                panic!("a validated configuration does not build: {e}\n{text}");
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "both refuse it the same way");
        }
        _ => panic!("parse and ConfigDocument::parse disagree"),
    }
}
