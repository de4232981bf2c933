//! The API server emulator (owned by the apiserver task).
