//! The query sides over the serving read models. An online rebuild builds a read model beside
//! the serving one and switches to it together with its in-memory state (search index, caches);
//! [`Views`] takes the new tree and state the first time it is asked after a switch, so a query
//! reads either the old build or the new one, never a mix, and never a half-built one.

use std::ops::Deref;
use std::sync::{Arc, PoisonError, RwLock};

use idstream_access::{Access, AccessProjection};
use idstream_directory::{Directory, DirectoryProjection};
use idstream_projection_runtime::{PersonalSeal, ReadModels, Serving};

use crate::Caches;

/// The query sides of the directory, access and identity read models as they serve now.
pub(crate) struct Views {
    read_models: ReadModels,
    /// The caches the first instances were built with: used for a read model whose instance is
    /// not the one this crate registers (tests that wrap a projection).
    caches: Caches,
    current: RwLock<Arc<Current>>,
}

/// One consistent set of query sides, and the switch count they were taken at.
pub(crate) struct Current {
    switches: u64,
    directory: Directory,
    access: Access,
    identity: idstream_identity::Identity,
}

/// A query side of one [`Current`]: keeps that set alive while it is used.
pub(crate) struct View<T: 'static> {
    current: Arc<Current>,
    pick: fn(&Current) -> &T,
}

impl<T> Deref for View<T> {
    type Target = T;

    fn deref(&self) -> &T {
        (self.pick)(&self.current)
    }
}

impl Views {
    /// Panics if `read_models` lacks the directory, access or identity read model (a wiring bug).
    pub(crate) fn new(read_models: ReadModels, caches: Caches) -> Views {
        let current = Arc::new(take(&read_models, &caches));
        Views {
            read_models,
            caches,
            current: RwLock::new(current),
        }
    }

    pub(crate) fn directory(&self) -> View<Directory> {
        View {
            current: self.current(),
            pick: |current| &current.directory,
        }
    }

    pub(crate) fn access(&self) -> View<Access> {
        View {
            current: self.current(),
            pick: |current| &current.access,
        }
    }

    pub(crate) fn identity(&self) -> View<idstream_identity::Identity> {
        View {
            current: self.current(),
            pick: |current| &current.identity,
        }
    }

    fn current(&self) -> Arc<Current> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.switches == self.read_models.switches() {
            return current;
        }
        let fresh = Arc::new(take(&self.read_models, &self.caches));
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if slot.switches < fresh.switches {
            *slot = fresh.clone();
        }
        fresh
    }
}

/// Takes the serving trees and their instances' in-memory state. The switch count is read first:
/// a switch that happens meanwhile makes the next call take them again.
fn take(read_models: &ReadModels, caches: &Caches) -> Current {
    let switches = read_models.switches();
    let seal: Arc<dyn PersonalSeal> = caches.seal.clone();
    let directory = read_models.serving(idstream_directory::NAME);
    let people = instance::<DirectoryProjection>(&directory)
        .and_then(|projection| projection.people())
        .unwrap_or_else(|| caches.people.clone());
    let access = read_models.serving(idstream_access::NAME);
    let facts = instance::<AccessProjection>(&access)
        .map(|projection| projection.cache())
        .unwrap_or_else(|| caches.access.clone());
    Current {
        switches,
        directory: Directory::new(directory.tree, people, seal.clone()),
        access: Access::new(access.tree, facts),
        identity: idstream_identity::Identity::new(read_models.tree(idstream_identity::NAME), seal),
    }
}

fn instance<P: 'static>(serving: &Serving) -> Option<&P> {
    let any: &dyn std::any::Any = serving.projection.as_ref();
    any.downcast_ref::<P>()
}
