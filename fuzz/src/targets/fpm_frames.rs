//! zebra's FPM stream on arbitrary bytes, the way the FPM listener takes a connection: frames
//! cut from the bytes (`control::fpm::Framer`), each decoded, translated against the host
//! interfaces of the lab (fuzz/lab.toml, with a host interface on its Internet port) and
//! applied to a control state of the lab.
//!
//! Invariants: never panics; a refused frame changes nothing (the same generation and
//! routes); an applied frame leaves each prefix it names as its last message says (a route,
//! or none); what the decoder gives, the encoder writes back to the same route; the frames
//! applied one at a time and all at once (one publication) end in the same tables.

use crate::LAB_TOML;
use dataplane::control::fpm::netlink::{encode, RouteMessage, RTM_NEWROUTE};
use dataplane::control::fpm::{apply, translate, FpmCounters, Frame, Framer};
use dataplane::control::state::ControlState;
use dataplane::control::state::DynamicChange;
use dataplane::control::state::RoutePrefix;
use pipeline_config::ConfigDocument;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Most frames taken from one input.
const MAX_FRAMES: usize = 64;

fn state() -> Mutex<ControlState> {
    let text = LAB_TOML.replacen(
        "roles = [\"core\", \"internet\"]",
        "roles = [\"core\", \"internet\"]\nhost_interface = true",
        1,
    );
    let (doc, cfg) = ConfigDocument::parse(&text, "fuzz/lab.toml").expect("the lab parses");
    Mutex::new(ControlState::new(doc, cfg, crate::lab().1.clone()).expect("the lab builds"))
}

thread_local! {
    /// Two control states of the lab, reused from input to input (building one costs
    /// more than most inputs): each run leaves them without dynamic routes.
    static STATES: RefCell<Option<(Mutex<ControlState>, Mutex<ControlState>)>> =
        const { RefCell::new(None) };
}

/// Remove every dynamic route (one frame); `false` if that was refused.
fn reset(st: &Mutex<ControlState>) -> bool {
    let mut st = st.lock().unwrap();
    let all: Vec<DynamicChange> = st
        .list_dynamic_routes()
        .iter()
        .filter_map(|r| r["prefix"].as_str()?.parse().ok())
        .map(|prefix| DynamicChange {
            prefix,
            route: None,
        })
        .collect();
    let done = st.apply_dynamic(&[all]);
    st.reclaim();
    done.frames.iter().all(Result::is_ok) && st.dynamic_counts().0 == 0
}

/// Interface indexes 1 to 6 are the lab's tunnels' host interfaces, 7 its Internet port's,
/// 8 one that is not the dataplane's (the seeds use these).
fn interfaces() -> HashMap<u32, String> {
    [
        "bb-acme",
        "bb-bravo",
        "bb-globex",
        "bb-initech",
        "bb-nonbr",
        "bb-edge2",
        "bb-internet0",
        "eth0",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| (i as u32 + 1, (*n).to_owned()))
    .collect()
}

/// The dynamic layer, by prefix.
fn dynamic(st: &Mutex<ControlState>) -> BTreeMap<String, Value> {
    st.lock()
        .unwrap()
        .list_dynamic_routes()
        .into_iter()
        .map(|r| (r["prefix"].as_str().unwrap_or_default().to_owned(), r))
        .collect()
}

fn generation(st: &Mutex<ControlState>) -> u64 {
    st.lock().unwrap().snapshots().generation()
}

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    let mut framer = Framer::default();
    framer.push(data);
    let mut frames: Vec<Frame> = Vec::new();
    while frames.len() < MAX_FRAMES {
        match framer.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) | Err(_) => break,
        }
    }
    for m in frames.iter().flatten().flatten() {
        let again = match m {
            RouteMessage::Add(r) => encode::route(RTM_NEWROUTE, r.prefix, r.protocol, &r.kind),
            RouteMessage::Add6(r) => encode::route6(RTM_NEWROUTE, r.prefix, r.protocol, &r.kind),
            _ => continue,
        };
        let decoded = dataplane::control::fpm::netlink::decode(&again);
        assert_eq!(decoded, Ok(vec![m.clone()]), "re-encoded {m:?}");
    }

    let (one, all) = STATES
        .with(|c| c.borrow_mut().take())
        .unwrap_or_else(|| (state(), state()));
    let counters = FpmCounters::default();
    let mut ifs = interfaces();
    for f in &frames {
        let (g, before) = (generation(&one), dynamic(&one));
        let refused = counters.frames_refused.load(Ordering::Relaxed);
        let published = apply(&one, vec![f.clone()], &mut ifs, &counters);
        let after = dynamic(&one);
        if counters.frames_refused.load(Ordering::Relaxed) > refused {
            assert!(published.is_none(), "a refused frame published");
            assert_eq!(generation(&one), g, "a refused frame published");
            assert_eq!(after, before, "a refused frame changed the routes");
            continue;
        }
        let Ok(msgs) = f else {
            panic!("a frame that does not decode was applied")
        };
        // What the frame asks of each prefix, last message last: a route, or none.
        let translated = {
            let st = one.lock().unwrap();
            translate(msgs.clone(), &st, &mut ifs).expect("an applied frame translates")
        };
        let mut last: BTreeMap<RoutePrefix, bool> = BTreeMap::new();
        for c in &translated.changes {
            last.insert(c.prefix, c.route.is_some());
        }
        for (p, present) in last {
            assert_eq!(
                after.contains_key(&p.to_string()),
                present,
                "{p}: the frame asks for {present}, the tables have {:?}",
                after.get(&p.to_string())
            );
        }
    }

    let counters = FpmCounters::default();
    apply(&all, frames, &mut ifs, &counters);
    assert_eq!(dynamic(&all), dynamic(&one), "one publication or many");
    if reset(&one) && reset(&all) {
        STATES.with(|c| *c.borrow_mut() = Some((one, all)));
    }
}
