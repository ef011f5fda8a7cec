//! [`Watched`], the view a read job gets: the store, remembering the corruption a read met.

use std::cell::RefCell;

use store_core::{KeyRange, ReadError, ReadView, Record, TableStore};

/// The view a read job gets: the store, remembering corruption met by the job even if the
/// job converted the error into its own type, so that the owner reports it.
pub(super) struct Watched<'a, S> {
    pub(super) inner: &'a S,
    pub(super) corrupted: RefCell<Option<String>>,
}

impl<S: TableStore> Watched<'_, S> {
    fn watch<T>(&self, result: Result<T, ReadError>) -> Result<T, ReadError> {
        if let Err(ReadError::Corrupted(detail)) = &result {
            *self.corrupted.borrow_mut() = Some(detail.clone());
        }
        result
    }
}

impl<S: TableStore> ReadView for Watched<'_, S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.watch(ReadView::get(self.inner, key))
    }

    fn scan(&self, range: &KeyRange, limit: usize) -> Result<Vec<Record>, ReadError> {
        self.watch(ReadView::scan(self.inner, range, limit))
    }
}
