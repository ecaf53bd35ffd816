//! Fuzzes `elevate::fuzzing::uid`; the body is a crate function, so CI runs it on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| elevate::fuzzing::uid(data));
