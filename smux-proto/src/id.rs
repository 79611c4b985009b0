//! The stream ID space: 65,536 IDs shared by both ends, recycled through a bitmap.
//!
//! An ID is marked used when either end opens a stream with it and becomes free again
//! only when that stream's FIN handshake has finished on this end. The end that dialled
//! takes the lowest free ID and the end that accepted the highest, so two ends of this
//! implementation rarely pick the same ID at once (when they do, both SYNs bind to one
//! stream, as the protocol says).

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
pub struct IdMap {
    words: Box<[u64; WORDS]>,
    used: u32,
    /// Search start, in words: below it (Dialer) or above it (Acceptor) all are used.
    hint: usize,
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
    pub fn new(role: Role) -> IdMap {
        IdMap {
            words: Box::new([0; WORDS]),
            used: 0,
            hint: match role {
                Role::Dialer => 0,
                Role::Acceptor => WORDS - 1,
            },
            role,
        }
    }

    /// The role this map allocates for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Number of IDs in use.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Whether `id` is in use.
    pub fn contains(&self, id: u16) -> bool {
        self.words[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// Marks `id` used; returns false if it already was.
    pub fn insert(&mut self, id: u16) -> bool {
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
    pub fn remove(&mut self, id: u16) -> bool {
        let idx = id as usize / 64;
        let bit = 1u64 << (id % 64);
        if self.words[idx] & bit == 0 {
            return false;
        }
        self.words[idx] &= !bit;
        self.used -= 1;
        self.hint = match self.role {
            Role::Dialer => self.hint.min(idx),
            Role::Acceptor => self.hint.max(idx),
        };
        true
    }

    /// Takes the next free ID for this role and marks it used; `None` if all are used.
    pub fn allocate(&mut self) -> Option<u16> {
        if self.used as usize == WORDS * 64 {
            return None;
        }
        let id = match self.role {
            Role::Dialer => (self.hint..WORDS).find_map(|i| {
                let free = !self.words[i];
                (free != 0).then(|| i * 64 + free.trailing_zeros() as usize)
            }),
            Role::Acceptor => (0..=self.hint).rev().find_map(|i| {
                let free = !self.words[i];
                (free != 0).then(|| i * 64 + 63 - free.leading_zeros() as usize)
            }),
        }?;
        self.hint = id / 64;
        let id = id as u16;
        self.insert(id);
        Some(id)
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
        m.remove(0);
        assert_eq!(m.allocate(), Some(0));
        let mut m = IdMap::new(Role::Acceptor);
        m.insert(65535);
        assert_eq!(m.allocate(), Some(65534));
    }
}
