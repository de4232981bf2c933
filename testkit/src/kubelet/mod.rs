//! The kubelet emulator (owned by the kubelet task).
