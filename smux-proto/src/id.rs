//! The stream ID space: 65,536 IDs shared by both ends, recycled through a bitmap.
//!
//! An ID is marked used when either end opens a stream with it and becomes free again
//! only when that stream's FIN handshake has finished on this end. The end that dialled
//! hands out IDs upward and the end that accepted downward, each going on from the last
//! ID it handed out (round-robin, wrapping at the end of the space), so two ends of this
//! implementation rarely pick the same ID at once (when they do, both SYNs bind to one
//! stream, as the protocol says), and a freed ID comes back as late as possible: a frame
//! a peer still sends for the old stream after the handshake (the reference
//! implementation can, see `docs/PROTOCOL.md`) then finds no stream rather than a new one.

/// Which end of the connection a session is; decides where new IDs are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the underlying connection: allocates IDs upward from 0.
    Dialer,
    /// The end that accepted the underlying connection: allocates IDs downward from 65535.
    Acceptor,
}

const WORDS: usize = 65536 / 64;

/// A bitmap over the 16-bit ID space (8 KiB).
#[derive(Clone)]
pub(crate) struct IdMap {
    words: Box<[u64; WORDS]>,
    used: u32,
    /// The next ID to try: one past (Dialer) or one below (Acceptor) the last handed out.
    next: u16,
    role: Role,
}

impl std::fmt::Debug for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("used", &self.used)
            .field("role", &self.role)
            .finish()
    }
}

impl IdMap {
    /// An empty map for an end with the given role.
    pub(crate) fn new(role: Role) -> IdMap {
        IdMap {
            words: Box::new([0; WORDS]),
            used: 0,
            next: match role {
                Role::Dialer => 0,
                Role::Acceptor => u16::MAX,
            },
            role,
        }
    }

    /// The role this map allocates for.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Number of IDs in use.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn used(&self) -> u32 {
        self.used
    }

    /// Whether `id` is in use.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn contains(&self, id: u16) -> bool {
        self.words[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// Marks `id` used; returns false if it already was.
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        let w = &mut self.words[id as usize / 64];
        let bit = 1u64 << (id % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.used += 1;
        true
    }

    /// Frees `id`; returns false if it was not in use.
    pub(crate) fn remove(&mut self, id: u16) -> bool {
        let idx = id as usize / 64;
        let bit = 1u64 << (id % 64);
        if self.words[idx] & bit == 0 {
            return false;
        }
        self.words[idx] &= !bit;
        self.used -= 1;
        true
    }

    /// Takes the next free ID for this role, going on from the last one handed out, and
    /// marks it used; `None` if all are used.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        if self.used as usize == WORDS * 64 {
            return None;
        }
        let id = match self.role {
            Role::Dialer => self.find_up(self.next),
            Role::Acceptor => self.find_down(self.next),
        };
        self.next = match self.role {
            Role::Dialer => id.wrapping_add(1),
            Role::Acceptor => id.wrapping_sub(1),
        };
        self.insert(id);
        Some(id)
    }

    /// Makes the next allocation start at `id`.
    #[cfg(test)]
    pub(crate) fn set_next(&mut self, id: u16) {
        self.next = id;
    }

    /// The first free ID at or after `from`, wrapping; the map must not be full.
    fn find_up(&self, from: u16) -> u16 {
        let (w, b) = (from as usize / 64, from % 64);
        // The start word twice: first its bits from `b` up, last (after wrapping) below.
        for k in 0..=WORDS {
            let i = (w + k) % WORDS;
            let mut free = !self.words[i];
            if k == 0 {
                free &= u64::MAX << b;
            }
            if free != 0 {
                return (i * 64) as u16 + free.trailing_zeros() as u16;
            }
        }
        unreachable!("allocate checks that a free ID exists")
    }

    /// The first free ID at or before `from`, wrapping downward; the map must not be full.
    fn find_down(&self, from: u16) -> u16 {
        let (w, b) = (from as usize / 64, from % 64);
        for k in 0..=WORDS {
            let i = (w + WORDS * 2 - k) % WORDS;
            let mut free = !self.words[i];
            if k == 0 {
                free &= u64::MAX >> (63 - b);
            }
            if free != 0 {
                return (i * 64) as u16 + 63 - free.leading_zeros() as u16;
            }
        }
        unreachable!("allocate checks that a free ID exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allocate_from_opposite_ends() {
        let mut d = IdMap::new(Role::Dialer);
        let mut a = IdMap::new(Role::Acceptor);
        assert_eq!(d.allocate(), Some(0));
        assert_eq!(d.allocate(), Some(1));
        assert_eq!(a.allocate(), Some(65535));
        assert_eq!(a.allocate(), Some(65534));
    }

    #[test]
    fn exhaustion_and_reuse() {
        for role in [Role::Dialer, Role::Acceptor] {
            let mut m = IdMap::new(role);
            let mut seen = vec![false; 65536];
            for _ in 0..65536 {
                let id = m.allocate().expect("free id");
                assert!(!seen[id as usize], "id {id} handed out twice");
                seen[id as usize] = true;
            }
            assert_eq!(m.allocate(), None);
            assert_eq!(m.used(), 65536);
            assert!(m.remove(4242));
            assert!(!m.remove(4242));
            assert_eq!(m.allocate(), Some(4242));
            assert_eq!(m.allocate(), None);
        }
    }

    #[test]
    fn ids_marked_by_the_peer_are_skipped() {
        let mut m = IdMap::new(Role::Dialer);
        assert!(m.insert(0));
        assert!(m.insert(1));
        assert!(!m.insert(1));
        assert_eq!(m.allocate(), Some(2));
        let mut m = IdMap::new(Role::Acceptor);
        m.insert(65535);
        assert_eq!(m.allocate(), Some(65534));
    }

    /// A freed ID comes back only after every other free ID was handed out once, so a
    /// late frame for the old stream finds no new stream to land in.
    #[test]
    fn freed_ids_come_back_as_late_as_possible() {
        for role in [Role::Dialer, Role::Acceptor] {
            let mut m = IdMap::new(role);
            let first = m.allocate().unwrap();
            assert!(m.remove(first));
            let mut seen = std::collections::HashSet::new();
            for _ in 0..65535 {
                let id = m.allocate().unwrap();
                assert_ne!(id, first, "{role:?}: freed ID reused early");
                assert!(seen.insert(id));
                assert!(m.remove(id));
            }
            assert_eq!(m.allocate(), Some(first), "{role:?}: wraps around");
        }
        // Going on from the last ID, across words and past used ones.
        let mut m = IdMap::new(Role::Dialer);
        for id in [64, 65, 130] {
            m.insert(id);
        }
        m.next = 63;
        assert_eq!(m.allocate(), Some(63));
        assert_eq!(m.allocate(), Some(66));
        m.next = 65535;
        assert_eq!(m.allocate(), Some(65535));
        assert_eq!(m.allocate(), Some(0));
        let mut m = IdMap::new(Role::Acceptor);
        m.insert(63);
        m.next = 64;
        assert_eq!(m.allocate(), Some(64));
        assert_eq!(m.allocate(), Some(62));
        m.next = 0;
        assert_eq!(m.allocate(), Some(0));
        assert_eq!(m.allocate(), Some(65535));
    }
}
