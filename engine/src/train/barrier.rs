//! A barrier that can be broken: when one lock-step worker fails, the others must not wait
//! for it forever.

use std::sync::{Condvar, Mutex};

pub(crate) struct Barrier {
    n: usize,
    state: Mutex<(usize, u64, bool)>, // (arrived, generation, broken)
    cv: Condvar,
}

impl Barrier {
    pub fn new(n: usize) -> Self {
        Self { n, state: Mutex::new((0, 0, false)), cv: Condvar::new() }
    }

    /// Waits for all `n` parties; `false` if the barrier is or becomes broken.
    pub fn wait(&self) -> bool {
        let mut st = self.state.lock().expect("barrier poisoned");
        if st.2 {
            return false;
        }
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.n {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return true;
        }
        while st.1 == generation && !st.2 {
            st = self.cv.wait(st).expect("barrier poisoned");
        }
        !st.2 || st.1 != generation
    }

    /// Releases every waiter, now and later, with `false`.
    pub fn break_all(&self) {
        let mut st = self.state.lock().expect("barrier poisoned");
        st.2 = true;
        self.cv.notify_all();
    }
}
