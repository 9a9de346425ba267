#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mqttd::fuzzing::codec_decode(data));
