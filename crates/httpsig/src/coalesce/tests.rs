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

/// Pretends a verifier is running, so that callers queue.
fn busy(c: &Coalescer) {
    c.lock().running = true;
}

/// Runs as the verifier until the queue is empty (or the role is handed on), as a caller whose
/// own verdict is in.
fn run_verifier(c: &Coalescer) {
    c.serve(&Slot(Mutex::new(SlotState::Done(true))));
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
    // One at a time through the queue, blocking and async.
    for (i, (k, msg, s)) in items.iter().enumerate() {
        assert_eq!(c.verify_blocking(k, msg.clone(), s), expected[i], "{i}");
        let mut f = c.verify(k, msg.clone(), s);
        assert_eq!(poll(&mut f, Waker::noop()), Poll::Ready(expected[i]), "{i}");
    }
    // All at once through the queue: one round.
    let c = Coalescer::new();
    busy(&c);
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, msg, s)| c.verify(k, msg.clone(), s))
        .collect();
    let first: Vec<_> = futures.iter_mut().map(|f| poll(f, Waker::noop())).collect();
    run_verifier(&c);
    for (i, f) in futures.iter_mut().enumerate() {
        let verdict = match first[i] {
            Poll::Ready(v) => v, // decided at once (unbatchable)
            Poll::Pending => match poll(f, Waker::noop()) {
                Poll::Ready(v) => v,
                Poll::Pending => panic!("{i} still waiting"),
            },
        };
        assert_eq!(verdict, expected[i], "{i}");
    }
    let stats = c.stats();
    assert_eq!(stats.rounds, 1);
    assert_eq!(stats.unbatchable, 7); // three wrong lengths, two weak keys, two HMAC
    assert_eq!(stats.submitted, 16);
    assert!(!c.lock().running);
}

#[test]
fn with_nothing_waiting_the_caller_verifies_at_once_as_a_single_verify() {
    let items = signed(2, &[1]);
    let c = Coalescer::new();
    for (i, (k, m, s)) in items.iter().enumerate() {
        let mut f = c.verify(k, m.clone(), s);
        assert_eq!(poll(&mut f, Waker::noop()), Poll::Ready(i == 0));
    }
    let stats = c.stats();
    assert_eq!((stats.rounds, stats.singles, stats.batches), (2, 2, 0));
    assert!(!c.lock().running);
}

#[test]
fn waiters_are_verified_as_one_batch_and_each_woken_with_its_own_verdict() {
    let items = signed(20, &[3, 17]);
    let c = Coalescer::new();
    busy(&c);
    let wakers: Vec<Arc<Count>> = (0..20).map(|_| Arc::default()).collect();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| c.verify(k, m.clone(), s))
        .collect();
    for (f, w) in futures.iter_mut().zip(&wakers) {
        assert_eq!(poll(f, &Waker::from(Arc::clone(w))), Poll::Pending);
    }
    assert_eq!(c.lock().waiting.len(), 20);
    run_verifier(&c);
    assert!(wakers.iter().all(|w| w.get() == 1));
    for (i, f) in futures.iter_mut().enumerate() {
        assert_eq!(poll(f, Waker::noop()), Poll::Ready(i != 3 && i != 17));
    }
    let stats = c.stats();
    assert_eq!(stats.rounds, 1);
    assert_eq!(stats.failed_batches, 3); // the batch of 20, and the two groups holding 3 and 17
    assert!(!c.lock().running);
}

#[test]
fn beyond_the_bound_a_caller_verifies_alone_and_nothing_more_is_queued() {
    let items = signed(6, &[5]);
    let c = Coalescer::with_limits(Limits::with_max_batch(4).max_waiting(3));
    busy(&c);
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
    assert_eq!(c.lock().waiting.len(), 3);
    assert_eq!(c.stats().alone, 3);
    run_verifier(&c);
    for f in &mut futures[..3] {
        assert_eq!(poll(f, Waker::noop()), Poll::Ready(true));
    }
    // No waiting at all: every caller verifies alone while a verifier runs.
    let c = Coalescer::with_limits(Limits::default().max_waiting(0));
    busy(&c);
    let (k, m, s) = &items[0];
    assert_eq!(
        poll(&mut c.verify(k, m.clone(), s), Waker::noop()),
        Poll::Ready(true)
    );
    assert!(c.lock().waiting.is_empty());
}

#[test]
fn a_cancelled_waiter_leaves_the_queue_and_the_others_get_their_verdicts() {
    let items = signed(5, &[4]);
    let c = Coalescer::new();
    busy(&c);
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| Some(c.verify(k, m.clone(), s)))
        .collect();
    for f in futures.iter_mut().flatten() {
        assert_eq!(poll(f, Waker::noop()), Poll::Pending);
    }
    futures[1] = None;
    futures[3] = None;
    assert_eq!(c.lock().waiting.len(), 3);
    run_verifier(&c);
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
    assert_eq!(c.stats().batched_signatures, 3);
}

#[test]
fn the_verifier_hands_its_role_on_and_a_cancelled_successor_passes_it_along() {
    let items = signed(7, &[6]);
    let c = Coalescer::with_limits(Limits::with_max_batch(2));
    busy(&c);
    let wakers: Vec<Arc<Count>> = (0..7).map(|_| Arc::default()).collect();
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| Some(c.verify(k, m.clone(), s)))
        .collect();
    for (f, w) in futures.iter_mut().zip(&wakers) {
        let f = f.as_mut().unwrap();
        assert_eq!(poll(f, &Waker::from(Arc::clone(w))), Poll::Pending);
    }
    // The verifier serves one batch of 2, then hands on to the oldest waiter (index 2).
    run_verifier(&c);
    assert_eq!(c.stats().handoffs, 1);
    assert!(c.lock().running);
    assert_eq!(
        wakers.iter().map(|w| w.get()).collect::<Vec<_>>(),
        [1, 1, 1, 0, 0, 0, 0]
    );
    // The successor is cancelled: the role passes to the next (index 3).
    futures[2] = None;
    assert_eq!(wakers[3].get(), 1);
    assert_eq!(c.lock().waiting.len(), 4);
    // It verifies itself and one more, then hands on to index 5, which finishes.
    let f3 = futures[3].as_mut().unwrap();
    assert_eq!(poll(f3, Waker::noop()), Poll::Ready(true));
    assert_eq!(wakers[4].get(), 1);
    assert_eq!(wakers[5].get(), 1);
    assert_eq!(
        poll(futures[4].as_mut().unwrap(), Waker::noop()),
        Poll::Ready(true)
    );
    assert_eq!(
        poll(futures[5].as_mut().unwrap(), Waker::noop()),
        Poll::Ready(true)
    );
    assert_eq!(
        poll(futures[6].as_mut().unwrap(), Waker::noop()),
        Poll::Ready(false)
    );
    assert_eq!(
        poll(futures[0].as_mut().unwrap(), Waker::noop()),
        Poll::Ready(true)
    );
    assert!(!c.lock().running);
    assert!(c.lock().waiting.is_empty());
    assert_eq!(c.stats().handoffs, 2);
}

#[test]
fn a_cancelled_successor_with_no_one_behind_it_stops_the_verifier() {
    let items = signed(3, &[]);
    let c = Coalescer::with_limits(Limits::with_max_batch(2));
    busy(&c);
    let mut futures: Vec<_> = items
        .iter()
        .map(|(k, m, s)| Some(c.verify(k, m.clone(), s)))
        .collect();
    for f in futures.iter_mut().flatten() {
        let _ = poll(f, Waker::noop());
    }
    run_verifier(&c);
    assert!(c.lock().running);
    futures[2] = None;
    assert!(!c.lock().running);
    // The next caller becomes the verifier.
    let (k, m, s) = &items[0];
    assert_eq!(
        poll(&mut c.verify(k, m.clone(), s), Waker::noop()),
        Poll::Ready(true)
    );
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
    eprintln!("{stats:?}");
    assert_eq!(stats.submitted, n as u64);
    assert!(!c.lock().running);
    assert!(c.lock().waiting.is_empty());
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
    assert!(c.lock().waiting.is_empty());
    assert!(!c.lock().running);
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
    assert!(!c.lock().running);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixes of good and bad signatures, in batches and through the queue: each verdict is
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
        busy(&c);
        let mut futures: Vec<_> = items.iter().map(|(k, m, s)| c.verify(k, m.clone(), s)).collect();
        // Beyond max_waiting (4 × max_batch), callers verify alone at once.
        let first: Vec<_> = futures.iter_mut().map(|f| poll(f, Waker::noop())).collect();
        run_verifier(&c);
        // Handed on when max_batch is small: the successors, polled in order, finish the queue.
        let got: Vec<_> = futures.iter_mut().zip(first).map(|(f, first)| match first {
            Poll::Ready(v) => v,
            Poll::Pending => match poll(f, Waker::noop()) {
                Poll::Ready(v) => v,
                Poll::Pending => panic!("still waiting"),
            },
        }).collect();
        prop_assert_eq!(got, expected);
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
