use std::net::Ipv4Addr;

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;

use super::picker::{backends_for, walk};
use super::*;

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("stateful-{i}")).collect()
}

fn first<S>(p: &Picker<S>, key: &[u8]) -> Option<usize>
where
    S: BackendSelection + Send + Sync,
    S::Iter: BackendIter,
{
    p.pick(key, &mut |_| true).map(ReplicaId::index)
}

/// A selection order that repeats some replicas and never yields others, like pingora's
/// pseudo-random fallbacks can.
struct Scripted(Vec<Backend>);

impl BackendIter for Scripted {
    fn next(&mut self) -> Option<&Backend> {
        if self.0.is_empty() {
            return None;
        }
        // Yield from the back, keeping a copy around so the order repeats.
        let b = self.0.remove(0);
        self.0.push(b);
        self.0.last()
    }
}

#[test]
fn the_walk_offers_every_replica_exactly_once() {
    let backends = backends_for(&names(5));
    let backend = |i: usize| {
        backends
            .iter()
            .find(|b| b.ext.get::<ReplicaId>() == Some(&ReplicaId(i)))
            .cloned()
            .expect("a backend per replica")
    };
    // pingora yields replicas 3, 3, 1, 3, 3, 1, ... and never 0, 2 or 4.
    let order = vec![backend(3), backend(3), backend(1)];
    let mut offered = Vec::new();
    let none = walk(Scripted(order.clone()), 5, &mut |id| {
        offered.push(id.index());
        false
    });
    assert_eq!(none, None);
    assert_eq!(offered, [3, 1, 0, 2, 4], "each once, pingora's order first");
    // The first acceptable one in that order wins.
    let mut offered = Vec::new();
    let got = walk(Scripted(order), 5, &mut |id| {
        offered.push(id.index());
        id.index() == 2
    });
    assert_eq!(got, Some(ReplicaId(2)));
    assert_eq!(offered, [3, 1, 0, 2]);
}

#[test]
fn tried_holds_every_id_up_to_the_cap() {
    let mut t = Tried::default();
    for i in [0, 5, MAX_REPLICAS_PER_POOL - 1] {
        assert!(!t.contains(ReplicaId(i)));
        t.insert(ReplicaId(i));
        assert!(t.contains(ReplicaId(i)));
    }
    assert!(!t.contains(ReplicaId(1)));
    assert!(!t.covers(2));
    t.insert(ReplicaId(1));
    assert!(t.covers(2));
}

#[test]
fn strategy_names_round_trip() {
    for s in Strategy::ALL {
        assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
        assert_eq!(strategy_from_u8(strategy_to_u8(s)), s);
    }
    assert!("sticky".parse::<Strategy>().is_err());
}

#[test]
fn round_robin_cycles_and_skips_rejected() {
    let rr = RoundRobin::new(&names(3));
    let mut counts = [0usize; 3];
    for _ in 0..300 {
        counts[first(&rr, b"").expect("a replica")] += 1;
    }
    assert_eq!(counts, [100, 100, 100]);
    // With replica 1 refused, the other two share the load roughly evenly.
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        let id = rr.pick(b"", &mut |id| id.index() != 1).expect("a replica");
        counts[id.index()] += 1;
    }
    assert_eq!(counts[1], 0);
    assert!(counts[0].abs_diff(counts[2]) < 300, "{counts:?}");
    // Nothing acceptable: None, not a panic.
    assert_eq!(rr.pick(b"", &mut |_| false), None);
}

#[test]
fn hash_is_stable_and_falls_over_to_one_other_replica() {
    let h = IpHash::new(&names(3));
    for k in 0..100u32 {
        let key = k.to_be_bytes();
        let a = first(&h, &key).expect("a replica");
        assert_eq!(Some(a), first(&h, &key));
        let b = h.pick(&key, &mut |id| id.index() != a);
        assert!(b.is_some() && b != Some(ReplicaId(a)));
        assert_eq!(
            b,
            h.pick(&key, &mut |id| id.index() != a),
            "fallback must be stable too"
        );
    }
    assert_eq!(h.pick(b"x", &mut |_| false), None);
}

/// Adding a replica to N moves at most about 1/(N+1) of the keys (checked over 2000 keys).
#[test]
fn ip_hash_remap_fraction_on_adding_a_replica() {
    for n in [2usize, 3, 5] {
        let before = IpHash::new(&names(n));
        let after = IpHash::new(&names(n + 1));
        let keys = 2000u32;
        let mut moved = 0;
        for k in 0..keys {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
            let key = RouteKey::for_client(&ip);
            let a = first(&before, key.hash_key());
            let b = first(&after, key.hash_key());
            if a != b {
                // A key may only move to the new replica.
                assert_eq!(b, Some(n), "key moved between old replicas");
                moved += 1;
            }
        }
        let frac = moved as f64 / keys as f64;
        let bound = 1.0 / (n as f64 + 1.0) + 0.05;
        assert!(frac <= bound, "n={n}: moved {frac:.3} > {bound:.3}");
        assert!(frac > 0.0, "the new replica must take some keys");
    }
}

fn request(cookie: Option<&str>) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/me", None).expect("a request header");
    if let Some(c) = cookie {
        req.insert_header("cookie", c).expect("a cookie header");
    }
    req
}

fn stateful_pool() -> Vec<String> {
    names(3)
}

#[test]
fn cookie_pins_new_clients_and_keeps_pinned_ones() {
    let routes = Routes::new(b"k", "stateful", &stateful_pool(), Loads::default());
    let cookie = routes.get(Strategy::Cookie);
    let client = Client {
        peer: None,
        trusted: &[],
    };
    // A new client: placed by round-robin, and pinned where it landed.
    let key = cookie.key(&request(None), client);
    assert_eq!(key.pinned, None);
    let landed = cookie
        .pick(&key, &mut |_, how| how == Admission::New)
        .expect("a replica");
    let set = cookie
        .pin(&key, landed)
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie for a new client")
        .to_string();
    let token = set.split(';').next().expect("name=value");
    // Back with that cookie: pinned, offered as such, and not pinned again.
    let key = cookie.key(&request(Some(token)), client);
    assert_eq!(key.pinned, Some(landed));
    let mut offers = Vec::new();
    let again = cookie.pick(&key, &mut |id, how| {
        offers.push((id, how));
        true
    });
    assert_eq!(again, Some(landed));
    assert_eq!(offers, [(landed, Admission::Pinned)]);
    assert_eq!(cookie.pin(&key, landed), None);
    // Its replica refuses (down): another one, as a new client, pinned anew.
    let moved = cookie
        .pick(&key, &mut |id, _| id != landed)
        .expect("another replica");
    assert_ne!(moved, landed);
    assert!(cookie.pin(&key, moved).is_some());
    // Round-robin and ip-hash never pin.
    for s in [Strategy::RoundRobin, Strategy::IpHash] {
        assert_eq!(routes.get(s).pin(&key, moved), None, "{s}");
    }
}

/// Growing 3 -> 4 moves about a quarter of the clients under ip-hash and about three quarters
/// under ip-modulo (2000 client addresses).
#[test]
fn modulo_moves_most_clients_where_the_ring_moves_few() {
    let (three, four) = (names(3), names(4));
    let moved = |strategy: Strategy| {
        let before = Routes::new(b"k", "stateful", &three, Loads::default());
        let after = Routes::new(b"k", "stateful", &four, Loads::default());
        let mut moved = 0;
        for k in 0..2000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
            let key = RouteKey::for_client(&ip);
            let pick = |r: &Routes| r.get(strategy).pick(&key, &mut |_, _| true);
            if pick(&before) != pick(&after) {
                moved += 1;
            }
        }
        f64::from(moved) / 2000.0
    };
    let ring = moved(Strategy::IpHash);
    let modulo = moved(Strategy::IpModulo);
    assert!(ring <= 0.30, "ip-hash moved {ring:.3}");
    assert!(modulo >= 0.6, "ip-modulo moved {modulo:.3}");
}

#[test]
fn ip_hash_keys_by_the_client() {
    let routes = Routes::new(b"k", "stateful", &stateful_pool(), Loads::default());
    let hash = routes.get(Strategy::IpHash);
    let key_of = |ip: [u8; 4]| {
        hash.key(
            &request(None),
            Client {
                peer: Some(IpAddr::from(ip)),
                trusted: &[],
            },
        )
    };
    let a = key_of([127, 0, 0, 9]);
    assert_eq!(a, key_of([127, 0, 0, 9]));
    assert_ne!(a, key_of([127, 0, 0, 10]));
    let pick = |k: &RouteKey| hash.pick(k, &mut |_, how| how == Admission::New);
    assert_eq!(pick(&a), pick(&a));
}

#[test]
fn affinity_tokens_are_opaque_and_validated() {
    let names: Vec<String> = ["stateful-1", "stateful-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = CookieAffinity::new(b"k1", "stateful", &names);
    let sc = a
        .set_cookie(ReplicaId(1))
        .and_then(|v| v.to_str().ok())
        .expect("a cookie for replica 1");
    assert!(sc.starts_with("statelab_affinity_stateful="));
    assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Path=/"));
    assert!(!sc.contains("stateful-2") && !sc.contains("127.0.0.1"));
    let token = sc.split(';').next().expect("name=value").to_string();
    let hv = |s: &str| HeaderValue::from_str(s).expect("a valid header value");
    let cookie = hv(&format!("statelab_session=abc; {token}"));
    assert_eq!(a.pinned([&cookie].into_iter()), Some(ReplicaId(1)));
    // Forged or garbage values are absent.
    for bad in [
        "statelab_affinity_stateful=stateful-2",
        "statelab_affinity_stateful=00000000000000000000000000000000",
        "statelab_affinity_stateful=",
        "statelab_affinity_stateful",
        "other=1",
    ] {
        assert_eq!(a.pinned([&hv(bad)].into_iter()), None, "{bad}");
    }
    // Another secret gives other tokens: a cookie from elsewhere does not pin.
    let b = CookieAffinity::new(b"k2", "stateful", &names);
    assert_eq!(b.pinned([&cookie].into_iter()), None);
}

#[test]
fn client_key_trusts_only_configured_proxies() {
    let trusted: Vec<IpNet> = vec!["172.16.0.0/12".parse().expect("a CIDR")];
    let gw: IpAddr = [172, 17, 0, 1].into();
    let direct: IpAddr = [127, 0, 0, 5].into();
    let hv = |s: &'static str| HeaderValue::from_static(s);
    let xff = hv("203.0.113.9");
    assert_eq!(
        client_key(direct, [&xff].into_iter(), &trusted),
        direct,
        "untrusted peer: XFF ignored"
    );
    assert_eq!(
        client_key(gw, [&xff].into_iter(), &trusted),
        IpAddr::from([203, 0, 113, 9])
    );
    assert_eq!(client_key(gw, std::iter::empty(), &trusted), gw);
    let chain = hv("198.51.100.1, 203.0.113.9, 172.18.0.2");
    assert_eq!(
        client_key(gw, [&chain].into_iter(), &trusted),
        IpAddr::from([203, 0, 113, 9])
    );
    let garbage = hv("nonsense");
    assert_eq!(client_key(gw, [&garbage].into_iter(), &trusted), gw);
    assert_eq!(client_key(gw, [&xff].into_iter(), &[]), gw);
    // Several header lines are one list, in order: the last line holds the nearest hops.
    let (first, second) = (hv("198.51.100.1, 203.0.113.9"), hv("172.18.0.2"));
    assert_eq!(
        client_key(gw, [&first, &second].into_iter(), &trusted),
        IpAddr::from([203, 0, 113, 9])
    );
    let (first, second) = (hv("203.0.113.9"), hv("198.51.100.77, 172.18.0.3"));
    assert_eq!(
        client_key(gw, [&first, &second].into_iter(), &trusted),
        IpAddr::from([198, 51, 100, 77])
    );
    let all_trusted = (hv("172.18.0.9"), hv("172.18.0.2"));
    assert_eq!(
        client_key(gw, [&all_trusted.0, &all_trusted.1].into_iter(), &trusted),
        IpAddr::from([172, 18, 0, 9])
    );
}

/// A deterministic stream of pseudo-random numbers for the property tests (SplitMix64).
struct Stream(u64);

impl Stream {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below
    }
}

fn counters(values: &[u64]) -> (Loads, Vec<Arc<AtomicI64>>) {
    let c: Vec<Arc<AtomicI64>> = values
        .iter()
        .map(|&v| Arc::new(AtomicI64::new(v as i64)))
        .collect();
    (Loads::new(c.clone()), c)
}

fn client(k: u64) -> RouteKey {
    RouteKey::for_client(&IpAddr::from(Ipv4Addr::from(k as u32 ^ 0x0a00_0000)))
}

fn factor(percent: u32) -> BalanceFactor {
    BalanceFactor::new(percent).expect("a valid factor")
}

#[test]
fn bounded_loads_keep_the_chosen_replica_within_the_limit_for_any_loads() {
    let mut rng = Stream(7);
    for n in 2..=8 {
        let names = names(n);
        let ring = IpHash::new(&names);
        for f in [100, 125, 150, 200] {
            let bounded = BoundedLoad::new(factor(f));
            for _ in 0..300 {
                let values: Vec<u64> = (0..n).map(|_| rng.next(12)).collect();
                let (loads, _) = counters(&values);
                let total: u64 = values.iter().sum();
                let limit = bounded.limit(total, n);
                let key = client(rng.next(1 << 20));
                let pick = |r: &dyn Route| bounded.pick(r, &key, &loads, limit, &mut |_, _| true);
                let got = pick(&ring);
                let chosen = got.chosen.expect("some replica is under the limit");
                assert!(
                    values[chosen.index()] < limit,
                    "n={n} f={f} loads={values:?} limit={limit} chose {chosen:?}"
                );
                assert_eq!(got, pick(&ring), "the same loads and key pick the same");
                let plain = Route::pick(&ring, &key, &mut |_, _| true);
                assert_eq!(got.moved, got.chosen != plain);
            }
        }
    }
}

#[test]
fn bounded_loads_hold_every_replica_to_the_factor_times_the_average_as_requests_arrive() {
    let mut rng = Stream(11);
    let names = names(5);
    let ring = IpHash::new(&names);
    for f in [100, 125, 200] {
        let bounded = BoundedLoad::new(factor(f));
        let (loads, counts) = counters(&[0; 5]);
        // Most arrivals come from a handful of clients, as under Zipf.
        for arrived in 1..=400u64 {
            let key = client(rng.next(4));
            let limit = bounded.limit(arrived - 1, 5);
            let got = bounded.pick(&ring, &key, &loads, limit, &mut |_, _| true);
            let chosen = got.chosen.expect("a replica");
            counts[chosen.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bound = (u64::from(f) * arrived).div_ceil(100 * 5);
            let max = (0..5).map(|i| loads.get(ReplicaId(i))).max().unwrap_or(0);
            assert!(
                max <= bound,
                "f={f}: {max} in flight over the bound {bound}"
            );
        }
    }
}

#[test]
fn bounded_loads_are_plain_consistent_hashing_when_loads_are_even() {
    let names = names(4);
    let ring = IpHash::new(&names);
    let bounded = BoundedLoad::new(factor(125));
    for each in [0, 3] {
        let (loads, _) = counters(&[each; 4]);
        let limit = bounded.limit(4 * each, 4);
        for k in 0..500 {
            let key = client(k);
            let got = bounded.pick(&ring, &key, &loads, limit, &mut |_, _| true);
            assert!(!got.moved);
            assert_eq!(got.chosen, Route::pick(&ring, &key, &mut |_, _| true));
        }
    }
}

#[test]
fn bounded_loads_never_move_a_pinned_client_and_respect_the_caller() {
    let names = names(3);
    let routes = Routes::new(b"k", "stateful", &names, Loads::default());
    let cookie = routes.get(Strategy::Cookie);
    let (loads, _) = counters(&[9, 0, 0]);
    let bounded = BoundedLoad::new(factor(100));
    let limit = bounded.limit(9, 3);
    let pinned = RouteKey::pinned_to(ReplicaId(0));
    let got = bounded.pick(cookie, &pinned, &loads, limit, &mut |_, _| true);
    assert_eq!(got.chosen, Some(ReplicaId(0)));
    // A new client is not placed on the loaded replica, whatever round-robin offers first.
    for _ in 0..6 {
        let got = bounded.pick(cookie, &RouteKey::default(), &loads, limit, &mut |_, _| {
            true
        });
        assert_ne!(got.chosen, Some(ReplicaId(0)));
    }
    // Nothing under the limit that the caller takes: the strategy's own choice stands.
    let only_first = &mut |id: ReplicaId, _| id == ReplicaId(0);
    let got = bounded.pick(cookie, &RouteKey::default(), &loads, limit, only_first);
    assert_eq!(
        got,
        Bounded {
            chosen: Some(ReplicaId(0)),
            moved: false
        }
    );
}

#[test]
fn least_requests_takes_the_less_loaded_of_two_draws() {
    let names = names(3);
    let (loads, counts) = counters(&[5, 0, 0]);
    let routes = Routes::new(b"k", "stateless", &names, loads);
    let least = routes.get(Strategy::LeastRequests);
    let mut seen = [0u32; 3];
    for _ in 0..300 {
        let id = least
            .pick(&RouteKey::default(), &mut |_, how| how == Admission::New)
            .expect("a replica");
        seen[id.index()] += 1;
    }
    // Two distinct draws always include an idle replica, so the loaded one never wins.
    assert_eq!(seen[0], 0, "{seen:?}");
    assert!(seen[1] > 50 && seen[2] > 50, "{seen:?}");
    // Even loads: every replica takes a share.
    counts[0].store(0, std::sync::atomic::Ordering::Relaxed);
    let mut seen = [0u32; 3];
    for _ in 0..300 {
        if let Some(id) = least.pick(&RouteKey::default(), &mut |_, _| true) {
            seen[id.index()] += 1;
        }
    }
    assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    // Only one replica usable: it is chosen; none usable: none.
    let one = least.pick(&RouteKey::default(), &mut |id, _| id == ReplicaId(2));
    assert_eq!(one, Some(ReplicaId(2)));
    assert_eq!(least.pick(&RouteKey::default(), &mut |_, _| false), None);
}
