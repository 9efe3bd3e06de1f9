//! The HTTP connections of one dependency, kept per calling thread.
//!
//! An HTTP/1.1 connection is driven by a task on the runtime of the thread that opened
//! it. With one pool shared by every server worker, a worker that takes a connection
//! another worker opened hands its request to that worker's thread and waits to be
//! woken with the answer: two thread wake-ups per call, measured as context switches at
//! the top of the gateway's profile. So each thread gets a client (and a pool) of its
//! own, made by the dependency's factory the first time the thread calls: a call is
//! written, read and answered on the thread that makes it. The policies (limits,
//! breakers, balancing, budget) stay per dependency, shared by every thread.
//!
//! Threads are few and long-lived (the server workers, the lifecycle runtime); past
//! [`MAX_THREADS`] further threads share the first client rather than grow the list.

use std::thread::{self, ThreadId};

use parking_lot::RwLock;

/// Distinct threads that get a client of their own.
const MAX_THREADS: usize = 64;

type MakeClient = Box<dyn Fn() -> reqwest::Client + Send + Sync>;

/// One `reqwest::Client` per calling thread, made on demand.
pub(crate) struct ThreadClients {
    make: MakeClient,
    clients: RwLock<Vec<(ThreadId, reqwest::Client)>>,
}

impl ThreadClients {
    pub(crate) fn new(make: impl Fn() -> reqwest::Client + Send + Sync + 'static) -> Self {
        ThreadClients {
            make: Box::new(make),
            clients: RwLock::new(Vec::new()),
        }
    }

    /// The client of the calling thread (a cheap handle: the pool is shared by clones).
    pub(crate) fn current(&self) -> reqwest::Client {
        let id = thread::current().id();
        if let Some(client) = find(&self.clients.read(), id) {
            return client;
        }
        let mut clients = self.clients.write();
        if let Some(client) = find(&clients, id) {
            return client;
        }
        if clients.len() >= MAX_THREADS {
            return clients[0].1.clone();
        }
        let client = (self.make)();
        clients.push((id, client.clone()));
        client
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.read().len()
    }
}

fn find(clients: &[(ThreadId, reqwest::Client)], id: ThreadId) -> Option<reqwest::Client> {
    clients
        .iter()
        .find(|(owner, _)| *owner == id)
        .map(|(_, client)| client.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn each_thread_gets_its_own_client_made_once() {
        crate::tls::use_ring_by_default();
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let clients = Arc::new(ThreadClients::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            reqwest::Client::new()
        }));
        clients.current();
        clients.current();
        assert_eq!(made.load(Ordering::SeqCst), 1, "one client per thread");
        let other = clients.clone();
        thread::spawn(move || {
            other.current();
            other.current();
        })
        .join()
        .unwrap();
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "another thread, another client"
        );
        assert_eq!(clients.len(), 2);
    }

    #[test]
    fn threads_beyond_the_limit_share_the_first_client() {
        crate::tls::use_ring_by_default();
        let clients = Arc::new(ThreadClients::new(reqwest::Client::new));
        for _ in 0..MAX_THREADS + 5 {
            let clients = clients.clone();
            thread::spawn(move || {
                clients.current();
            })
            .join()
            .unwrap();
        }
        assert_eq!(clients.len(), MAX_THREADS);
    }
}
