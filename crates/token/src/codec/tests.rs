use super::*;

fn varint_bytes(v: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(v);
    w.into_inner()
}

#[test]
fn varint_round_trips_at_the_edges() {
    for v in [
        0,
        1,
        127,
        128,
        255,
        300,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let bytes = varint_bytes(v);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.varint().unwrap(), v, "value {v}");
        r.finish().unwrap();
    }
    assert_eq!(varint_bytes(u64::MAX).len(), 10);
}

#[test]
fn varint_rejects_non_minimal_and_overflow() {
    // 0 written in two bytes.
    assert!(Reader::new(&[0x80, 0x00]).varint().is_err());
    // 1 written in two bytes.
    assert!(Reader::new(&[0x81, 0x00]).varint().is_err());
    // Eleven bytes.
    assert!(Reader::new(&[0xff; 11]).varint().is_err());
    // Ten bytes whose last group overflows u64.
    let mut over = [0xff; 10];
    over[9] = 0x02;
    assert!(Reader::new(&over).varint().is_err());
    // Truncated.
    assert!(Reader::new(&[0x80]).varint().is_err());
}

#[test]
fn strings_are_checked() {
    assert_eq!(Reader::new(&[0]).str(), Err(Malformed("empty string")));
    assert_eq!(
        Reader::new(&[2, 0xff, 0xfe]).str(),
        Err(Malformed("string is not utf-8"))
    );
    assert_eq!(
        Reader::new(&[3, b'a']).str(),
        Err(Malformed("length exceeds input"))
    );
    let mut long = Writer::new();
    long.str(&"x".repeat(MAX_STR + 1));
    assert_eq!(
        Reader::new(&long.into_inner()).str(),
        Err(Malformed("string too long"))
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut r = Reader::new(&[1, 2]);
    assert_eq!(r.u8().unwrap(), 1);
    assert_eq!(r.finish(), Err(Malformed("trailing bytes")));
}
