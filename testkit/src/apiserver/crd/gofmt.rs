//! How Go prints the numbers that appear in schema validation messages (`%v` of a float64,
//! as kube-openapi formats bounds and bad values), so messages match upstream byte for byte.

/// `fmt.Sprintf("%v", f)` for a float64: shortest representation, integral values without a
/// decimal point, exponent form (two-digit exponent) below 1e-4 and from 1e21 on.
pub fn float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let e = format!("{f:e}");
        let Some((mantissa, exp)) = e.split_once('e') else {
            return e;
        };
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    // Rust's Display is also the shortest round-trip form, and prints 2.0 as "2".
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::float;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(float(0.95), "0.95");
        assert_eq!(float(2.0), "2");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(-3.5), "-3.5");
    }
}
