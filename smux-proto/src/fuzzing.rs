//! Entry points shared by the fuzz targets and the tests that replay them. Not part of
//! the public API.
