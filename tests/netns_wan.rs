//! Being written: netns_wan.
