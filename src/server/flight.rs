//! Single flight: at most one run of the reload procedure at a time, and
//! every caller that arrives while it runs gets that run's result.
//!
//! Requests do not block a worker thread while they wait: they are parked
//! with the flight and answered by whichever thread led the run. The
//! watcher, which has nothing else to do, blocks on a condition variable
//! until the generation counter moves past the run it joined.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Something parked with a flight, finished with the run's result.
pub trait Waiter<T>: Send {
    /// Called once, on the thread that led the run.
    fn finish(self, result: &Arc<T>);
}

/// What [`Flight::submit`] did with a waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Role {
    /// A run was in flight; the waiter gets its result.
    Joined,
    /// No run was in flight; this call ran one and finished every waiter.
    Led,
}

/// Runs of one procedure, never two at once.
pub struct Flight<T, W> {
    state: Mutex<State<T, W>>,
    landed: Condvar,
}

struct State<T, W> {
    running: bool,
    /// Runs finished so far, panicked ones included.
    generation: u64,
    /// The result of the last run; `None` before the first or after a
    /// panic.
    last: Option<Arc<T>>,
    waiters: Vec<W>,
    /// Callers blocked in [`Flight::run`] until the run lands.
    blocked: usize,
    /// No new run may start; runs in flight still land.
    closed: bool,
}

impl<T, W: Waiter<T>> Default for Flight<T, W> {
    fn default() -> Self {
        Flight {
            state: Mutex::new(State {
                running: false,
                generation: 0,
                last: None,
                waiters: Vec::new(),
                blocked: 0,
                closed: false,
            }),
            landed: Condvar::new(),
        }
    }
}

impl<T, W: Waiter<T>> Flight<T, W> {
    /// Parks `waiter` with the run in flight, or starts a run of `run` on
    /// this thread and finishes every waiter with its result. Once closed,
    /// a waiter that would start a run is handed back.
    pub fn submit(&self, waiter: W, run: impl FnOnce() -> T) -> Result<Role, W> {
        let mut state = self.lock();
        if state.running {
            state.waiters.push(waiter);
            return Ok(Role::Joined);
        }
        if state.closed {
            return Err(waiter);
        }
        state.waiters.push(waiter);
        self.lead(state, run);
        Ok(Role::Led)
    }

    /// Joins the run in flight, or starts one, and blocks until it lands.
    /// `None` when closed with nothing in flight, or when the run panicked.
    pub fn run(&self, run: impl FnOnce() -> T) -> Option<Arc<T>> {
        let mut state = self.lock();
        if state.running {
            let joined = state.generation;
            state.blocked += 1;
            let mut state = self
                .landed
                .wait_while(state, |s| s.generation == joined)
                .unwrap_or_else(PoisonError::into_inner);
            state.blocked -= 1;
            return state.last.clone();
        }
        if state.closed {
            return None;
        }
        Some(self.lead(state, run))
    }

    /// Lets no new run start; a run in flight goes on.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Blocks until no run is in flight.
    pub fn wait_idle(&self) {
        let state = self.lock();
        let _idle = self
            .landed
            .wait_while(state, |s| s.running)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn lead(&self, mut state: MutexGuard<'_, State<T, W>>, run: impl FnOnce() -> T) -> Arc<T> {
        state.running = true;
        drop(state);
        // Should `run` panic, the guard still lands the flight: parked
        // waiters are dropped and blocked callers get `None`.
        let mut landing = Landing {
            flight: self,
            result: None,
        };
        let result = Arc::new(run());
        landing.result = Some(Arc::clone(&result));
        drop(landing);
        result
    }

    fn lock(&self) -> MutexGuard<'_, State<T, W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends a run when dropped, whether it returned or panicked.
struct Landing<'a, T, W: Waiter<T>> {
    flight: &'a Flight<T, W>,
    result: Option<Arc<T>>,
}

impl<T, W: Waiter<T>> Drop for Landing<'_, T, W> {
    fn drop(&mut self) {
        let waiters = {
            let mut state = self.flight.lock();
            state.running = false;
            state.generation += 1;
            state.last = self.result.clone();
            std::mem::take(&mut state.waiters)
        };
        self.flight.landed.notify_all();
        if let Some(result) = &self.result {
            for waiter in waiters {
                waiter.finish(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{self, Receiver, Sender};
    use std::thread;
    use std::time::Duration;

    /// Sends the result it is finished with.
    struct Probe(Sender<u32>);

    impl Waiter<u32> for Probe {
        fn finish(self, result: &Arc<u32>) {
            self.0.send(**result).unwrap();
        }
    }

    type TestFlight = Flight<u32, Probe>;

    /// A run that blocks until told to finish, counting its calls.
    fn gated(runs: &AtomicUsize, gate: &Mutex<Receiver<()>>) -> u32 {
        let n = runs.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        gate.lock().unwrap().recv().unwrap();
        n
    }

    #[test]
    fn callers_during_a_run_share_its_result() {
        let flight = Arc::new(TestFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = mpsc::channel();
        let gate = Arc::new(Mutex::new(gate));
        let (results, received) = mpsc::channel();

        let leader = {
            let (flight, runs, gate) = (flight.clone(), runs.clone(), gate.clone());
            let probe = Probe(results.clone());
            thread::spawn(move || flight.submit(probe, || gated(&runs, &gate)).ok())
        };
        while !flight.lock().running {
            thread::yield_now();
        }
        for _ in 0..10 {
            let role = flight.submit(Probe(results.clone()), || unreachable!());
            assert_eq!(role.ok(), Some(Role::Joined));
        }
        let blocked = {
            let flight = flight.clone();
            thread::spawn(move || flight.run(|| unreachable!()).map(|r| *r))
        };
        while flight.lock().blocked == 0 {
            thread::yield_now();
        }
        open.send(()).unwrap();

        assert_eq!(leader.join().unwrap(), Some(Role::Led));
        assert_eq!(blocked.join().unwrap(), Some(1));
        let got: Vec<u32> = received.try_iter().collect();
        assert_eq!(got, vec![1; 11]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_caller_after_a_run_starts_the_next_one() {
        let flight = TestFlight::default();
        assert_eq!(flight.run(|| 1).as_deref(), Some(&1));
        assert_eq!(flight.run(|| 2).as_deref(), Some(&2));
        let (tx, rx) = mpsc::channel();
        assert_eq!(flight.submit(Probe(tx), || 3).ok(), Some(Role::Led));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(flight.lock().generation, 3);
    }

    #[test]
    fn closing_refuses_new_runs_but_lets_callers_join() {
        let flight = Arc::new(TestFlight::default());
        let (open, gate) = mpsc::channel::<()>();
        let leader = {
            let flight = flight.clone();
            thread::spawn(move || flight.run(|| gate.recv().map(|()| 7).unwrap()))
        };
        while !flight.lock().running {
            thread::yield_now();
        }
        flight.close();
        let (tx, rx) = mpsc::channel();
        assert_eq!(flight.submit(Probe(tx), || 0).ok(), Some(Role::Joined));
        open.send(()).unwrap();
        flight.wait_idle();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        assert_eq!(leader.join().unwrap().as_deref(), Some(&7));

        let (tx, _rx) = mpsc::channel();
        assert!(flight.submit(Probe(tx), || 0).is_err());
        assert!(flight.run(|| 0).is_none());
    }

    #[test]
    fn a_panicking_run_lands_and_the_flight_goes_on() {
        let flight = Arc::new(TestFlight::default());
        let (tx, rx) = mpsc::channel();
        let crashed = {
            let flight = flight.clone();
            thread::spawn(move || flight.submit(Probe(tx), || panic!("boom")))
        };
        assert!(crashed.join().is_err());
        // The parked waiter was dropped without a result.
        assert!(rx.recv().is_err());
        assert!(!flight.lock().running);
        assert_eq!(flight.run(|| 5).as_deref(), Some(&5));
    }
}
