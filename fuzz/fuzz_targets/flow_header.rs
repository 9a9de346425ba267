#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mqttd::fuzzing::flow_header(data));
