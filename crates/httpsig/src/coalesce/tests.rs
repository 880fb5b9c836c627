use std::sync::atomic::AtomicUsize;

use proptest::prelude::*;

use super::*;
use crate::SigningKey;

/// The group order ℓ, little-endian: S + ℓ is a non-canonical S.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn key(seed: u8) -> (SigningKey, VerifyingKey) {
    let k = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let v = k.verifying_key().unwrap();
    (k, v)
}

/// `n` signatures by distinct keys over distinct messages; those in `bad` have a bit flipped.
fn signed(n: usize, bad: &[usize]) -> Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let (k, v) = key(u8::try_from(i % 250).unwrap() + 1);
            let message = format!("\"@method\": POST\nrequest {i}").into_bytes();
            let mut signature = k.sign(&message).unwrap();
            if bad.contains(&i) {
                signature[40] ^= 1;
            }
            (v, message, signature)
        })
        .collect()
}

fn refs(items: &[(VerifyingKey, Vec<u8>, Vec<u8>)]) -> Vec<(&VerifyingKey, &[u8], &[u8])> {
    items
        .iter()
        .map(|(k, m, s)| (k, m.as_slice(), s.as_slice()))
        .collect()
}

fn singles(items: &[(VerifyingKey, Vec<u8>, Vec<u8>)]) -> Vec<bool> {
    items.iter().map(|(k, m, s)| k.verify(m, s)).collect()
}

/// S + ℓ: the same point equation, a non-canonical S, refused by ZIP-215.
fn non_canonical_s(signature: &[u8]) -> Vec<u8> {
    let mut out = signature.to_vec();
    let mut carry = 0u16;
    for (byte, l) in out[32..].iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn poll(f: &mut Verification<'_>, waker: &Waker) -> Poll<bool> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Polls until ready (a leader needs two polls: it yields once first).
fn settle_now(f: &mut Verification<'_>) -> bool {
    for _ in 0..2 {
        if let Poll::Ready(v) = poll(f, Waker::noop()) {
            return v;
        }
    }
    panic!("not ready after two polls");
}

/// A good signature through `c` is verified at its first poll, and leaves nothing behind.
fn decided_at_first_poll(c: &Coalescer, (k, m, s): &(VerifyingKey, Vec<u8>, Vec<u8>)) {
    assert_eq!(
        poll(&mut c.verify(k, m.clone(), s), Waker::noop()),
        Poll::Ready(true)
    );
    assert!(idle(c));
}

/// No round gathers and nothing waits.
fn idle(c: &Coalescer) -> bool {
    !c.gathers() && c.waiting() == 0
}

#[test]
fn verdicts_agree_with_single_verify_on_good_bad_and_malformed_signatures() {
    let (k1, v1) = key(1);
    let (_, v2) = key(2);
    let m = b"signature base".to_vec();
    let good = k1.sign(&m).unwrap();
    let mut bad_r = good.clone();
    bad_r[0] ^= 1;
    let mut bad_s = good.clone();
    bad_s[33] ^= 1;
    let mut r_not_a_point = good.clone();
    r_not_a_point[..32].copy_from_slice(&[0xff; 32]);
    r_not_a_point[0] = 2;
    let weak = VerifyingKey::ed25519([0; 32]); // small order (and not a point for [2,0..])
    let hmac = VerifyingKey::hmac_sha256(b"secret");
    let hmac_sig = SigningKey::hmac_sha256(b"secret").sign(&m).unwrap();
    let items: Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> = vec![
        (v1.clone(), m.clone(), good.clone()),
        (v1.clone(), m.clone(), good.clone()), // a duplicate
        (v2.clone(), m.clone(), good.clone()), // the wrong key
        (v1.clone(), b"other".to_vec(), good.clone()),
        (v1.clone(), m.clone(), bad_r),
        (v1.clone(), m.clone(), bad_s),
        (v1.clone(), m.clone(), non_canonical_s(&good)),
        (v1.clone(), m.clone(), r_not_a_point),
        (v1.clone(), m.clone(), good[..63].to_vec()),
        (v1.clone(), m.clone(), [&good[..], &[0]].concat()),
        (v1.clone(), m.clone(), Vec::new()),
        (v1.clone(), m.clone(), vec![0; 64]),
        (
            weak.clone(),
            m.clone(),
            [&[1u8][..], &[0u8; 63][..]].concat(),
        ),
        (weak, m.clone(), good.clone()),
        (hmac.clone(), m.clone(), hmac_sig.clone()),
        (hmac, b"x".to_vec(), hmac_sig),
    ];
    let expected = singles(&items);
    assert_eq!(
        expected,
        [
            true, true, false, false, false, false, false, false, false, false, false, false,
            false, false, true, false
        ]
    );
    // Ed25519 verdicts are also vouch_token's single verify for fit keys.
    let p1: [u8; 32] = v1.public_bytes().try_into().unwrap();
    for (k, msg, s) in &items[..12] {
        if k.public_bytes() == v1.public_bytes() {
            assert_eq!(k.verify(msg, s), vouch_token::ed25519::verify(&p1, msg, s));
        }
    }
    let c = Coalescer::new();
    assert_eq!(c.verify_all(&refs(&items)), expected);
    // One at a time, blocking and async.
    for (i, (k, msg, s)) in items.iter().enumerate() {
        assert_eq!(c.verify_blocking(k, msg.clone(), s), expected[i], "{i}");
        assert_eq!(
            settle_now(&mut c.verify(k, msg.clone(), s)),
            expected[i],
            "{i}"
        );
    }
    assert!(idle(&c));
    // All at once: one round, led by the first.
    let c = Coalescer::new();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, msg, s)| c.verify(k, msg.clone(), s))
        .collect();
    let first: Vec<_> = futures.iter_mut().map(|f| poll(f, Waker::noop())).collect();
    assert_eq!(first[0], Poll::Pending);
    assert_eq!(c.waiting(), 9);
    let verdicts: Vec<bool> = futures
        .iter_mut()
        .zip(first)
        .enumerate()
        .map(|(i, (f, first))| match first {
            Poll::Ready(v) => v, // decided at once (unbatchable)
            Poll::Pending => match poll(f, Waker::noop()) {
                Poll::Ready(v) => v,
                Poll::Pending => panic!("{i} still waiting"),
            },
        })
        .collect();
    assert_eq!(verdicts, expected);
    let stats = c.stats();
    assert_eq!(stats.rounds, 1);
    assert_eq!(stats.unbatchable, 7); // three wrong lengths, two weak keys, two HMAC
    assert_eq!(stats.submitted, 16);
    assert!(idle(&c));
}

#[test]
fn with_nothing_else_waiting_the_caller_yields_once_then_verifies_alone() {
    let items = signed(2, &[1]);
    let c = Coalescer::new();
    for (i, (k, m, s)) in items.iter().enumerate() {
        let woken = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut f = c.verify(k, m.clone(), s);
        // The yield: it wakes itself (no timer) and lets the other ready tasks run.
        assert_eq!(poll(&mut f, &waker), Poll::Pending);
        assert_eq!(woken.get(), 1);
        assert!(c.gathers());
        assert_eq!(poll(&mut f, &waker), Poll::Ready(i == 0));
        assert!(idle(&c));
    }
    let stats = c.stats();
    assert_eq!((stats.rounds, stats.singles, stats.batches), (2, 2, 0));
    // A bound of one: no round gathers, no yield.
    decided_at_first_poll(
        &Coalescer::with_limits(Limits::with_max_batch(1)),
        &items[0],
    );
}

#[test]
fn callers_arriving_while_the_leader_yields_are_verified_as_one_batch_each_woken_with_its_own_verdict()
 {
    let items = signed(20, &[3, 17]);
    let c = Coalescer::new();
    let wakers: Vec<Arc<Count>> = (0..20).map(|_| Arc::default()).collect();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| c.verify(k, m.clone(), s))
        .collect();
    for (f, w) in futures.iter_mut().zip(&wakers) {
        assert_eq!(poll(f, &Waker::from(Arc::clone(w))), Poll::Pending);
    }
    assert_eq!(c.waiting(), 20);
    // The followers wait without being woken; the leader has woken itself.
    assert_eq!(
        wakers.iter().map(|w| w.get()).collect::<Vec<_>>(),
        [&[1][..], &[0; 19]].concat()
    );
    // A follower polled before its round is verified keeps waiting.
    assert_eq!(poll(&mut futures[5], Waker::noop()), Poll::Pending);
    assert_eq!(poll(&mut futures[0], Waker::noop()), Poll::Ready(true));
    assert!(idle(&c));
    // Every follower woken once, the one that re-polled through its new waker (a noop).
    assert!(
        wakers[1..]
            .iter()
            .enumerate()
            .all(|(i, w)| w.get() == usize::from(i + 1 != 5))
    );
    for (i, f) in futures.iter_mut().enumerate().skip(1) {
        assert_eq!(poll(f, Waker::noop()), Poll::Ready(i != 3 && i != 17));
    }
    let stats = c.stats();
    assert_eq!(stats.rounds, 1);
    assert_eq!(stats.failed_batches, 3); // the batch of 20, and the two groups holding 3 and 17
}

#[test]
fn a_full_round_closes_and_the_next_caller_leads_the_next_one() {
    let items = signed(5, &[3]);
    let c = Coalescer::with_limits(Limits::with_max_batch(2));
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| c.verify(k, m.clone(), s))
        .collect();
    for f in &mut futures {
        assert_eq!(poll(f, Waker::noop()), Poll::Pending);
    }
    // Rounds {0, 1}, {2, 3} (both full, closed) and {4}, gathering.
    assert!(c.gathers());
    assert_eq!(c.waiting(), 5);
    // The leaders verify their rounds independently, in any order.
    assert_eq!(poll(&mut futures[4], Waker::noop()), Poll::Ready(true));
    assert!(!c.gathers());
    assert_eq!(poll(&mut futures[2], Waker::noop()), Poll::Ready(true));
    assert_eq!(poll(&mut futures[3], Waker::noop()), Poll::Ready(false));
    assert_eq!(poll(&mut futures[1], Waker::noop()), Poll::Pending);
    assert_eq!(poll(&mut futures[0], Waker::noop()), Poll::Ready(true));
    assert_eq!(poll(&mut futures[1], Waker::noop()), Poll::Ready(true));
    let stats = c.stats();
    assert_eq!(
        (stats.rounds, stats.batches, stats.failed_batches),
        (3, 2, 1)
    );
    assert_eq!(stats.singles, 1 + 2); // the round of one; the failing round of two, split
    assert!(idle(&c));
}

#[test]
fn beyond_the_bound_a_caller_verifies_alone_and_nothing_more_waits() {
    let items = signed(6, &[5]);
    let c = Coalescer::with_limits(Limits::with_max_batch(4).max_waiting(3));
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| c.verify(k, m.clone(), s))
        .collect();
    let polled: Vec<_> = futures.iter_mut().map(|f| poll(f, Waker::noop())).collect();
    assert_eq!(
        polled,
        [
            Poll::Pending,
            Poll::Pending,
            Poll::Pending,
            Poll::Ready(true),
            Poll::Ready(true),
            Poll::Ready(false)
        ]
    );
    assert_eq!(c.waiting(), 3);
    assert_eq!(c.stats().alone, 3);
    for f in &mut futures[..3] {
        assert_eq!(poll(f, Waker::noop()), Poll::Ready(true));
    }
    assert!(idle(&c));
    // No waiting at all: every caller verifies alone, at once.
    decided_at_first_poll(
        &Coalescer::with_limits(Limits::default().max_waiting(0)),
        &items[0],
    );
}

#[test]
fn a_cancelled_follower_leaves_the_others_their_verdicts() {
    let items = signed(5, &[4]);
    let c = Coalescer::new();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| Some(c.verify(k, m.clone(), s)))
        .collect();
    for f in futures.iter_mut().flatten() {
        assert_eq!(poll(f, Waker::noop()), Poll::Pending);
    }
    futures[1] = None;
    futures[3] = None;
    let verdicts: Vec<_> = futures
        .iter_mut()
        .map(|f| f.as_mut().map(|f| poll(f, Waker::noop())))
        .collect();
    assert_eq!(
        verdicts,
        [
            Some(Poll::Ready(true)),
            None,
            Some(Poll::Ready(true)),
            None,
            Some(Poll::Ready(false))
        ]
    );
    assert!(idle(&c));
}

#[test]
fn a_cancelled_leader_verifies_its_round_for_the_others_and_a_lone_one_just_leaves() {
    let items = signed(4, &[2]);
    let c = Coalescer::new();
    let wakers: Vec<Arc<Count>> = (0..4).map(|_| Arc::default()).collect();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| Some(c.verify(k, m.clone(), s)))
        .collect();
    for (f, w) in futures.iter_mut().zip(&wakers) {
        assert_eq!(
            poll(f.as_mut().unwrap(), &Waker::from(Arc::clone(w))),
            Poll::Pending
        );
    }
    futures[0] = None;
    assert!(idle(&c));
    assert!(wakers[1..].iter().all(|w| w.get() == 1));
    let verdicts: Vec<_> = futures[1..]
        .iter_mut()
        .map(|f| poll(f.as_mut().unwrap(), Waker::noop()))
        .collect();
    assert_eq!(
        verdicts,
        [Poll::Ready(true), Poll::Ready(false), Poll::Ready(true)]
    );
    // Alone: nothing verified, nothing left behind; the next caller leads a new round.
    let c = Coalescer::new();
    let (k, m, s) = &items[0];
    let mut f = c.verify(k, m.clone(), s);
    assert_eq!(poll(&mut f, Waker::noop()), Poll::Pending);
    drop(f);
    assert!(idle(&c));
    assert_eq!(c.stats().rounds, 0);
    assert!(settle_now(&mut c.verify(k, m.clone(), s)));
}

/// The cost of a failing batch, counted: the whole batch, ⌈√n⌉-sized groups, and single verifies
/// inside the failing groups only.
#[test]
fn one_bad_signature_costs_a_bounded_number_of_extra_verifies() {
    let cases: &[(usize, &[usize], u64, u64)] = &[
        // (n, bad, batch verifies, single verifies)
        (64, &[0], 1 + 8, 8),
        (64, &[31], 1 + 8, 8),
        (64, &[63], 1 + 7, 8), // the last group is known bad: not checked as a batch
        (16, &[0], 1 + 4, 4),
        (16, &[15], 1 + 3, 4),
        (17, &[8], 1 + 4, 5), // groups of 5: 5, 5, 5, 2
        (8, &[3], 1, 8),      // small: single verifies
        (2, &[0], 1, 2),
        (64, &[0, 63], 1 + 8, 16),
    ];
    for &(n, bad, batches, singles_) in cases {
        let items = signed(n, bad);
        let c = Coalescer::new();
        let verdicts = c.verify_all(&refs(&items));
        assert_eq!(verdicts, singles(&items));
        assert_eq!(
            verdicts.iter().filter(|v| !**v).count(),
            bad.len(),
            "{n} {bad:?}"
        );
        let stats = c.stats();
        assert_eq!(
            (stats.batches, stats.singles),
            (batches, singles_),
            "{n} {bad:?}"
        );
        // The group batches hold at most n signatures between them.
        assert!(stats.batched_signatures <= 2 * n as u64, "{n} {bad:?}");
    }
    // Every signature bad: the batch, every group, and one single verify each.
    let all: Vec<usize> = (0..64).collect();
    let items = signed(64, &all);
    let c = Coalescer::new();
    assert!(c.verify_all(&refs(&items)).iter().all(|v| !v));
    let stats = c.stats();
    assert_eq!((stats.batches, stats.singles), (9, 64));
    // A good batch: one batch verify.
    let c = Coalescer::new();
    assert!(c.verify_all(&refs(&signed(64, &[]))).iter().all(|v| *v));
    assert_eq!((c.stats().batches, c.stats().singles), (1, 0));
}

#[test]
fn verify_all_goes_in_batches_of_the_bound() {
    let items = signed(10, &[9]);
    let c = Coalescer::with_limits(Limits::with_max_batch(4));
    assert_eq!(c.verify_all(&refs(&items)), singles(&items));
    let stats = c.stats();
    // 4, 4 and 2; the last fails and is settled by single verifies.
    assert_eq!(
        (stats.batches, stats.batched_signatures, stats.singles),
        (3, 10, 2)
    );
    assert!(c.verify_all(&[]).is_empty());
}

/// On one thread (a current-thread runtime, as the rmcp bench's server), tasks that are ready
/// together reach their verification while the first one yields: one round.
#[tokio::test(flavor = "current_thread")]
async fn tasks_ready_together_on_one_thread_form_one_round() {
    let items = Arc::new(signed(16, &[9]));
    let c = Arc::new(Coalescer::new());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (items, c) = (Arc::clone(&items), Arc::clone(&c));
            tokio::spawn(async move {
                let (k, m, s) = &items[i];
                c.verify(k, m.clone(), s).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), i != 9, "{i}");
    }
    let stats = c.stats();
    assert_eq!(stats.rounds, 1, "{stats:?}");
    assert_eq!(stats.batched_signatures, 16 + 16, "{stats:?}"); // the batch, then its groups
    assert!(idle(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_tasks_on_a_multi_threaded_runtime_each_get_their_own_verdict() {
    let n = 400;
    let bad: Vec<usize> = (0..n).filter(|i| i % 7 == 3).collect();
    let items = Arc::new(signed(n, &bad));
    let c = Arc::new(Coalescer::with_limits(Limits::with_max_batch(16)));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (items, c) = (Arc::clone(&items), Arc::clone(&c));
        tasks.push(tokio::spawn(async move {
            let (k, m, s) = &items[i];
            tokio::task::yield_now().await;
            (i, c.verify(k, m.clone(), s).await)
        }));
    }
    let run = async {
        for t in tasks {
            let (i, verdict) = t.await.unwrap();
            assert_eq!(verdict, !bad.contains(&i), "{i}");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("every task gets its verdict");
    let stats = c.stats();
    assert_eq!(stats.submitted, n as u64);
    assert!(stats.rounds < n as u64, "{stats:?}");
    assert!(idle(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_abandon_their_verification_do_not_hang_the_others() {
    let n = 300;
    let items = Arc::new(signed(n, &[7, 100]));
    let c = Arc::new(Coalescer::with_limits(Limits::with_max_batch(8)));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (items, c) = (Arc::clone(&items), Arc::clone(&c));
        tasks.push(tokio::spawn(async move {
            let (k, m, s) = &items[i];
            let mut f = c.verify(k, m.clone(), s);
            if i % 3 == 0 {
                // Poll once, then give up.
                let _ = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await;
                drop(f);
                return (i, None);
            }
            (i, Some(f.await))
        }));
    }
    let run = async {
        for t in tasks {
            if let (i, Some(verdict)) = t.await.unwrap() {
                assert_eq!(verdict, i != 7 && i != 100, "{i}");
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("no task hangs");
    assert!(idle(&c));
}

#[test]
fn plain_threads_each_get_their_own_verdict() {
    let n = 160;
    let items = Arc::new(signed(n, &[1, 50, 159]));
    let c = Arc::new(Coalescer::new());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (items, c) = (Arc::clone(&items), Arc::clone(&c));
            std::thread::spawn(move || {
                for i in (t..n).step_by(8) {
                    let (k, m, s) = &items[i];
                    assert_eq!(
                        c.verify_blocking(k, m.clone(), s),
                        ![1, 50, 159].contains(&i)
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.stats().submitted, n as u64);
    assert!(idle(&c));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixes of good and bad signatures, in batches and through rounds: each verdict is
    /// the single verify's.
    #[test]
    fn random_mixes_agree_with_single_verify(
        n in 1usize..70,
        bad in prop::collection::vec(any::<bool>(), 70),
        flip in 0usize..64,
        max_batch in 1usize..80,
    ) {
        let bad: Vec<usize> = (0..n).filter(|i| bad[*i]).collect();
        let mut items = signed(n, &[]);
        for &i in &bad {
            items[i].2[flip] ^= 0x80;
        }
        let expected = singles(&items);
        let c = Coalescer::with_limits(Limits::with_max_batch(max_batch));
        prop_assert_eq!(c.verify_all(&refs(&items)), expected.clone());
        let mut futures: Vec<_> = items.iter().map(|(k, m, s)| c.verify(k, m.clone(), s)).collect();
        // Rounds of max_batch, each led by its first; beyond max_waiting (4 × max_batch),
        // callers verify alone at once. The second pass reaches each leader before its round.
        let first: Vec<_> = futures.iter_mut().map(|f| poll(f, Waker::noop())).collect();
        let got: Vec<_> = futures.iter_mut().zip(first).map(|(f, first)| match first {
            Poll::Ready(v) => v,
            Poll::Pending => match poll(f, Waker::noop()) {
                Poll::Ready(v) => v,
                Poll::Pending => panic!("still waiting"),
            },
        }).collect();
        prop_assert_eq!(got, expected);
        prop_assert!(idle(&c));
    }

    /// Arbitrary key and signature bytes never panic, and agree with single verify.
    #[test]
    fn arbitrary_bytes_never_panic(
        public in any::<[u8; 32]>(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
        message in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let k = VerifyingKey::ed25519(public);
        let c = Coalescer::new();
        let expected = k.verify(&message, &signature);
        prop_assert_eq!(c.verify_blocking(&k, message.clone(), &signature), expected);
        prop_assert_eq!(c.verify_all(&[(&k, &message, &signature)]), vec![expected]);
    }
}
