//! Coalesced Ed25519 verification: the signatures that wait to be checked at the same moment are
//! checked as one batch, as a database's group commit writes the transactions that wait.
//!
//! A [`Coalescer`] is shared by the tasks (or threads) that verify requests. Each hands it a key,
//! the signature base and the signature, and awaits its own verdict ([`Coalescer::verify`], or
//! [`Coalescer::verify_blocking`] from a plain thread). There is no background thread, no timer
//! and no runtime dependency. Signatures are verified in *rounds*:
//!
//! - a caller that finds no round gathering on its thread opens one and leads it. Its future
//!   then yields once (it wakes itself and returns `Pending`, or awaits the runtime's own yield
//!   given to [`Coalescer::yield_with`]), so the tasks the thread already has ready run first;
//!   those that reach their own verification meanwhile join the round. At the next poll the
//!   leader closes the round and verifies everything in it as one [`Batch`] (one signature: a
//!   single verify), and wakes each caller with its verdict;
//! - rounds gather per thread: the tasks of one worker thread batch together, and the workers of
//!   a multi-threaded runtime verify their own rounds in parallel, so the coalescer never confines
//!   verification to one core. A plain thread calling [`Coalescer::verify_blocking`] leads its
//!   own rounds (threads share one of 16 slots only past 16 threads);
//! - a round closes to newcomers once it holds [`Limits::max_batch`] signatures (64 by
//!   default), or when its leader starts verifying: the next caller opens the next round. Any
//!   number of rounds can be verified at once;
//! - at most [`Limits::max_waiting`] signatures wait for a verdict, across all rounds: a caller
//!   that finds that many verifies its own signature alone, at once. Memory is bounded, and a
//!   flood cannot keep anyone's signature waiting: beyond the bound, it costs what a single
//!   verify costs.
//!
//! With nothing else ready, the yield costs one trip through the scheduler's run queue (no
//! timer, no sleep): the latency added at low load is that of a task switch.
//!
//! The verdict of every signature is the one [`VerifyingKey::verify`] gives: vouch's one Ed25519
//! rule, ZIP-215 (`vouch_token::ed25519`), for which a batch accepts exactly what single
//! verification accepts. Keys that cannot be batched (another algorithm, or a weak Ed25519 key,
//! which verifies nothing) and signatures that are not 64 bytes are decided at once, without
//! queueing.
//!
//! # A failing batch
//!
//! A batch says only that some signature in it is bad. A failing batch of `n` signatures is split
//! into groups of ⌈√n⌉ (in arrival order), each verified as a batch; the signatures of a failing
//! group are verified one at a time. When every group but the last passed, the last must hold
//! the bad signature and is not checked as a batch. A failing batch of 8 or fewer goes straight
//! to single verifies. A bad signature is only ever reported by a single verify that refuses it.
//!
//! One bad signature among `n` thus costs, beyond the failed batch, at most ⌈√n⌉ group batches
//! (together about one batch of `n`) and ⌈√n⌉ single verifies: 1 + 8 batch verifies and 8
//! single verifies for `n` = 64 (a bisection that checks both halves makes 1 + 10 batch verifies
//! and 2 single verifies). Measured on the development machine (the `coalesce` bench), a batch
//! of 16 with one bad signature costs 2.3–2.6× a good one wherever the bad signature sits;
//! bisection would cost 2.4× (the bad signature always in the second half) to 3.5× (always in
//! the first, where both halves are checked), and single verifies of all 16 3.4×. Many bad
//! signatures cost at most the failed batch, the groups, and one single verify each: an
//! attacker cannot make a bad signature cost much more than verifying it alone.
//!
//! # Cancellation
//!
//! A caller that drops its future loses no one else's verdict. A leader dropped before it
//! verified verifies its round in `drop` if anyone else is in it (at most one round's work);
//! dropped alone, it just leaves.
//!
//! [`Coalescer::verify_all`] applies the same batch-and-split to signatures a caller already
//! holds together. [`Coalescer::stats`] counts the work done.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use vouch_token::ed25519::{Batch, DecodedKey};

use crate::alg::VerifyingKey;

/// A failing batch of at most this many signatures is settled by single verifies.
const SINGLES_UP_TO: usize = 8;

/// The bounds of a [`Coalescer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most signatures verified as one batch (at least 1). Default 64: beyond it the cost
    /// per signature hardly falls, and a failing batch costs more to split.
    pub max_batch: usize,
    /// The most signatures waiting for a verifier (0 turns coalescing off). A caller that finds
    /// this many waiting verifies its own signature alone. Default 256.
    pub max_waiting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_waiting: 256,
        }
    }
}

impl Limits {
    /// Limits with this batch bound, and room for four batches to wait.
    pub fn with_max_batch(max_batch: usize) -> Self {
        Self {
            max_batch,
            max_waiting: max_batch.saturating_mul(4),
        }
    }

    /// These limits with another bound on the waiting signatures.
    #[must_use]
    pub fn max_waiting(self, max_waiting: usize) -> Self {
        Self {
            max_waiting,
            ..self
        }
    }
}

/// What a [`Coalescer`] has done since it was made, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Signatures handed to [`Coalescer::verify`] or [`Coalescer::verify_blocking`].
    pub submitted: u64,
    /// Of those, decided at once without queueing: a key that cannot be batched, or a signature
    /// that is not 64 bytes.
    pub unbatchable: u64,
    /// Of those, verified alone because [`Limits::max_waiting`] signatures were waiting.
    pub alone: u64,
    /// Drains of the queue by a verifier, each settled as one batch (or one single verify).
    pub rounds: u64,
    /// Batch verifies, including those of the groups of a failing batch.
    pub batches: u64,
    /// Signatures in those batch verifies, summed.
    pub batched_signatures: u64,
    /// Batch verifies that failed.
    pub failed_batches: u64,
    /// Single verifies: a round of one, a signature verified alone, or one in a failing group.
    pub singles: u64,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    unbatchable: AtomicU64,
    alone: AtomicU64,
    rounds: AtomicU64,
    batches: AtomicU64,
    batched_signatures: AtomicU64,
    failed_batches: AtomicU64,
    singles: AtomicU64,
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(u64::try_from(by).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// One signature to verify, owned: the verifier may be another caller.
struct Entry {
    public: [u8; 32],
    key: DecodedKey,
    message: Vec<u8>,
    signature: [u8; 64],
}

impl Entry {
    /// The entry for a signature a batch can take, or the message back.
    fn new(key: &VerifyingKey, message: Vec<u8>, signature: &[u8]) -> Result<Self, Vec<u8>> {
        let (Some((public, key)), Ok(signature)) =
            (key.ed25519_batchable(), <[u8; 64]>::try_from(signature))
        else {
            return Err(message);
        };
        Ok(Self {
            public,
            key,
            message,
            signature,
        })
    }
}

/// Rounds gather per thread, on this many shards: the tasks of one worker thread batch
/// together, and the workers of a runtime verify their rounds in parallel.
const SHARDS: usize = 16;

/// The shard of the calling thread's rounds: threads take shards in turn as they first verify.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.try_with(|s| *s).unwrap_or(0)
}

/// A runtime's yield: a future that lets the runtime's other ready tasks run before it is ready
/// (see [`Coalescer::yield_with`]).
pub type Yield = fn() -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One round: the signatures gathered while its leader let the other ready tasks run, verified
/// together.
struct Round {
    /// The shard of threads it gathers on.
    shard: usize,
    state: Mutex<RoundState>,
}

struct RoundState {
    /// The signatures, in arrival order (the leader's first); taken by the verifier.
    entries: Vec<Entry>,
    /// The waker of each caller waiting on this round (the leader's place is empty).
    wakers: Vec<Option<Waker>>,
    /// The verdicts, in the order of the entries, once verified.
    verdicts: Option<Vec<bool>>,
}

impl Round {
    fn new(shard: usize, entry: Entry) -> Self {
        Self {
            shard,
            state: Mutex::new(RoundState {
                entries: vec![entry],
                wakers: vec![None],
                verdicts: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RoundState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Verifies Ed25519 signatures in batches formed by the callers verifying at the same moment
/// (see the [module documentation](self)).
///
/// Share one between tasks or threads (`Arc<Coalescer>`, or a `static`). Lock order inside: the
/// gathering round's slot, then a round; no lock is held while a signature is verified or a
/// waker woken.
///
/// ```
/// use vouch_httpsig::{SigningKey, coalesce::Coalescer};
/// # fn main() -> Result<(), vouch_httpsig::Error> {
/// let key = SigningKey::ed25519_from_seed(&[7; 32])?;
/// let base = b"\"@method\": POST\n\"@signature-params\": (\"@method\")".to_vec();
/// let signature = key.sign(&base)?;
/// let coalescer = Coalescer::new();
/// assert!(coalescer.verify_blocking(&key.verifying_key()?, base.clone(), &signature));
/// assert!(!coalescer.verify_blocking(&key.verifying_key()?, b"other".to_vec(), &signature));
/// # Ok(()) }
/// ```
pub struct Coalescer {
    limits: Limits,
    /// How a leader lets the other ready tasks run; `None`: it wakes itself once.
    yield_with: Option<Yield>,
    /// The round taking signatures now on each shard of threads, if any.
    gathering: [Mutex<Option<Arc<Round>>>; SHARDS],
    /// Signatures in rounds without their verdict yet.
    waiting: AtomicUsize,
    counters: Counters,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coalescer")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    /// A coalescer with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A coalescer with these limits (a `max_batch` of 0 is taken as 1).
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits: Limits {
                max_batch: limits.max_batch.max(1),
                ..limits
            },
            yield_with: None,
            gathering: std::array::from_fn(|_| Mutex::new(None)),
            waiting: AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// This coalescer with its leaders yielding through `yield_with`, the runtime's own yield,
    /// instead of waking themselves once. A runtime's yield can do more: tokio's
    /// (`tokio::task::yield_now`) also lets the tasks whose I/O became ready meanwhile run, so
    /// the requests that arrived during the last round join the next one.
    #[must_use]
    pub fn yield_with(mut self, yield_with: Yield) -> Self {
        self.yield_with = Some(yield_with);
        self
    }

    /// Verifies `signature` over `message` (the signature base) under `key`, in a batch with the
    /// signatures other callers are verifying at the same moment. The verdict is
    /// [`VerifyingKey::verify`]'s.
    ///
    /// The future may do the verifying for others when polled (that is the coalescing), and
    /// needs no runtime. A key that cannot be batched (another algorithm, a weak Ed25519 key) or
    /// a signature that is not 64 bytes is verified here, before the future is returned. Polled
    /// again after it was ready, the future answers `false`.
    pub fn verify<'a>(
        &'a self,
        key: &VerifyingKey,
        message: Vec<u8>,
        signature: &[u8],
    ) -> Verification<'a> {
        bump(&self.counters.submitted, 1);
        let step = match Entry::new(key, message, signature) {
            Ok(entry) => Step::Submit(entry),
            Err(message) => {
                bump(&self.counters.unbatchable, 1);
                Step::Decided(key.verify(&message, signature))
            }
        };
        Verification {
            coalescer: self,
            step,
        }
    }

    /// [`Coalescer::verify`] from a plain thread: parks the thread until the verdict is in.
    pub fn verify_blocking(&self, key: &VerifyingKey, message: Vec<u8>, signature: &[u8]) -> bool {
        let unpark = Arc::new(Unpark {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(Arc::clone(&unpark));
        let mut cx = Context::from_waker(&waker);
        let mut verification = self.verify(key, message, signature);
        loop {
            if let Poll::Ready(verdict) = Pin::new(&mut verification).poll(&mut cx) {
                return verdict;
            }
            while !unpark.woken.swap(false, Ordering::AcqRel) {
                std::thread::park();
            }
        }
    }

    /// Verifies signatures the caller holds together, as the coalescer verifies a batch of
    /// waiters (in batches of at most [`Limits::max_batch`], a failing one split as the
    /// [module documentation](self) says). Each verdict is [`VerifyingKey::verify`]'s, in order.
    pub fn verify_all(&self, signatures: &[(&VerifyingKey, &[u8], &[u8])]) -> Vec<bool> {
        let mut verdicts = vec![false; signatures.len()];
        let mut entries = Vec::with_capacity(signatures.len().min(self.limits.max_batch));
        let mut at = Vec::with_capacity(entries.capacity());
        for (i, (key, message, signature)) in signatures.iter().enumerate() {
            match Entry::new(key, message.to_vec(), signature) {
                Ok(entry) => {
                    entries.push(entry);
                    at.push(i);
                }
                Err(message) => {
                    if let Some(v) = verdicts.get_mut(i) {
                        *v = key.verify(&message, signature);
                    }
                }
            }
            if entries.len() == self.limits.max_batch || i + 1 == signatures.len() {
                for (i, verdict) in at.drain(..).zip(self.settle(&entries)) {
                    if let Some(v) = verdicts.get_mut(i) {
                        *v = verdict;
                    }
                }
                entries.clear();
            }
        }
        verdicts
    }

    /// What this coalescer has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            submitted: get(&c.submitted),
            unbatchable: get(&c.unbatchable),
            alone: get(&c.alone),
            rounds: get(&c.rounds),
            batches: get(&c.batches),
            batched_signatures: get(&c.batched_signatures),
            failed_batches: get(&c.failed_batches),
            singles: get(&c.singles),
        }
    }

    fn single(&self, entry: &Entry) -> bool {
        bump(&self.counters.singles, 1);
        entry.key.verify(&entry.message, &entry.signature)
    }

    fn batch(&self, entries: &[Entry]) -> bool {
        bump(&self.counters.batches, 1);
        bump(&self.counters.batched_signatures, entries.len());
        let mut batch = Batch::new();
        for e in entries {
            batch.add(&e.public, &e.message, &e.signature);
        }
        let ok = batch.verify();
        if !ok {
            bump(&self.counters.failed_batches, 1);
        }
        ok
    }

    /// The verdict of each entry, in order: one batch, split if it fails (see the module
    /// documentation).
    fn settle(&self, entries: &[Entry]) -> Vec<bool> {
        let n = entries.len();
        if let [one] = entries {
            return vec![self.single(one)];
        }
        if n == 0 || self.batch(entries) {
            return vec![true; n];
        }
        if n <= SINGLES_UP_TO {
            return entries.iter().map(|e| self.single(e)).collect();
        }
        let size = n.isqrt() + usize::from(n.isqrt() * n.isqrt() < n);
        let groups = n.div_ceil(size);
        let mut verdicts = Vec::with_capacity(n);
        let mut all_passed = true;
        for (i, group) in entries.chunks(size).enumerate() {
            let known_bad = all_passed && i + 1 == groups;
            if !known_bad && group.len() > 1 && self.batch(group) {
                verdicts.extend(std::iter::repeat_n(true, group.len()));
            } else {
                all_passed = false;
                verdicts.extend(group.iter().map(|e| self.single(e)));
            }
        }
        verdicts
    }

    fn gathering(&self, shard: usize) -> MutexGuard<'_, Option<Arc<Round>>> {
        self.gathering
            .get(shard)
            .unwrap_or(&self.gathering[0])
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True if a round gathers on any thread.
    #[cfg(test)]
    fn gathers(&self) -> bool {
        (0..SHARDS).any(|shard| self.gathering(shard).is_some())
    }

    /// Signatures waiting for a verdict now, across all rounds.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Takes a place for one more waiting signature, unless [`Limits::max_waiting`] are waiting.
    fn reserve(&self) -> bool {
        let max = self.limits.max_waiting;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.waiting.fetch_sub(n, Ordering::AcqRel);
    }

    /// Enters `entry` in the gathering round, or opens one. Returns the round and the entry's
    /// place in it (0: this caller leads it).
    fn enter(&self, entry: Entry, waker: &Waker) -> (Arc<Round>, usize) {
        let shard = shard();
        let mut gathering = self.gathering(shard);
        if let Some(round) = gathering.as_ref() {
            let round = Arc::clone(round);
            let (index, full) = {
                let mut state = round.lock();
                state.entries.push(entry);
                state.wakers.push(Some(waker.clone()));
                (
                    state.entries.len() - 1,
                    state.entries.len() >= self.limits.max_batch,
                )
            };
            if full {
                *gathering = None;
            }
            return (round, index);
        }
        let round = Arc::new(Round::new(shard, entry));
        if self.limits.max_batch > 1 {
            *gathering = Some(Arc::clone(&round));
        }
        (round, 0)
    }

    /// Closes `round` to newcomers, if it still gathers.
    fn close(&self, round: &Arc<Round>) {
        let mut gathering = self.gathering(round.shard);
        if gathering.as_ref().is_some_and(|g| Arc::ptr_eq(g, round)) {
            *gathering = None;
        }
    }

    /// Verifies a closed round, leaves the verdicts and wakes its callers; returns the leader's
    /// verdict (the first entry's).
    fn run(&self, round: &Round) -> bool {
        let entries = std::mem::take(&mut round.lock().entries);
        bump(&self.counters.rounds, 1);
        let mut guard = Running {
            coalescer: self,
            round,
            n: entries.len(),
            done: false,
        };
        let verdicts = self.settle(&entries);
        drop(entries);
        guard.done = true;
        self.release(verdicts.len());
        let leader = verdicts.first().copied().unwrap_or(false);
        let wakers = {
            let mut state = round.lock();
            state.verdicts = Some(verdicts);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
        leader
    }
}

/// A round being verified: if verification unwinds (it should not), its callers get a refusal,
/// so that no one waits forever.
struct Running<'a> {
    coalescer: &'a Coalescer,
    round: &'a Round,
    n: usize,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.coalescer.release(self.n);
        let wakers = {
            let mut state = self.round.lock();
            state.verdicts = Some(vec![false; self.n]);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

// The entry moves into a round at the first poll; boxing it would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Not yet handed to the coalescer.
    Submit(Entry),
    /// Leading a round that gathers until the yield is over (`None`: the next poll).
    Lead(
        Arc<Round>,
        Option<Pin<Box<dyn Future<Output = ()> + Send + 'static>>>,
    ),
    /// In another caller's round, at this place, waiting for the verdict.
    Follow(Arc<Round>, usize),
    /// Decided without queueing, not yet returned.
    Decided(bool),
    /// Returned.
    Finished,
}

/// The verdict of [`Coalescer::verify`], to await.
#[must_use = "the signature is verified when this is awaited"]
pub struct Verification<'a> {
    coalescer: &'a Coalescer,
    step: Step,
}

impl core::fmt::Debug for Verification<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let step = match self.step {
            Step::Submit(_) => "submit",
            Step::Lead(..) => "lead",
            Step::Follow(..) => "follow",
            Step::Decided(_) => "decided",
            Step::Finished => "finished",
        };
        f.debug_struct("Verification")
            .field("step", &step)
            .finish_non_exhaustive()
    }
}

impl Future for Verification<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.get_mut();
        let c = this.coalescer;
        match std::mem::replace(&mut this.step, Step::Finished) {
            Step::Finished => Poll::Ready(false),
            Step::Decided(verdict) => Poll::Ready(verdict),
            Step::Submit(entry) => {
                if !c.reserve() {
                    bump(&c.counters.alone, 1);
                    return Poll::Ready(c.single(&entry));
                }
                match c.enter(entry, cx.waker()) {
                    (round, 0) if c.limits.max_batch == 1 => Poll::Ready(c.run(&round)),
                    (round, 0) => {
                        // Let the ready tasks run, and join, before verifying.
                        match c.yield_with {
                            Some(yield_with) => this.lead(round, Some(yield_with()), cx),
                            None => {
                                this.step = Step::Lead(round, None);
                                cx.waker().wake_by_ref();
                                Poll::Pending
                            }
                        }
                    }
                    (round, index) => {
                        this.step = Step::Follow(round, index);
                        Poll::Pending
                    }
                }
            }
            Step::Lead(round, yielding) => this.lead(round, yielding, cx),
            Step::Follow(round, index) => {
                let mut state = round.lock();
                if let Some(verdicts) = &state.verdicts {
                    return Poll::Ready(verdicts.get(index).copied().unwrap_or(false));
                }
                if let Some(slot) = state.wakers.get_mut(index)
                    && !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                {
                    *slot = Some(cx.waker().clone());
                }
                drop(state);
                this.step = Step::Follow(round, index);
                Poll::Pending
            }
        }
    }
}

impl Verification<'_> {
    /// The leader's step: polls the yield, then closes the round and verifies it.
    fn lead(
        &mut self,
        round: Arc<Round>,
        mut yielding: Option<Pin<Box<dyn Future<Output = ()> + Send + 'static>>>,
        cx: &mut Context<'_>,
    ) -> Poll<bool> {
        if let Some(y) = yielding.as_mut()
            && y.as_mut().poll(cx).is_pending()
        {
            self.step = Step::Lead(round, yielding);
            return Poll::Pending;
        }
        let c = self.coalescer;
        c.close(&round);
        Poll::Ready(c.run(&round))
    }
}

impl Drop for Verification<'_> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.step, Step::Finished) {
            Step::Lead(round, _) => {
                // Cancelled before verifying: the others in the round still get their verdicts.
                self.coalescer.close(&round);
                let others = round.lock().entries.len() > 1;
                if others {
                    self.coalescer.run(&round);
                } else {
                    let alone = std::mem::take(&mut round.lock().entries);
                    self.coalescer.release(alone.len());
                }
            }
            Step::Follow(round, index) => {
                if let Some(slot) = round.lock().wakers.get_mut(index) {
                    *slot = None;
                }
            }
            Step::Submit(_) | Step::Decided(_) | Step::Finished => {}
        }
    }
}

/// Wakes a thread parked in [`Coalescer::verify_blocking`].
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests;
