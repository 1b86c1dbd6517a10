/// How numbers are printed by the CLI and in reports: the one implementation of fixed decimals, so that every command
/// rounds the same way (half away from zero, from the value as given) and the CLI tests can rely on the text.
public enum Formatting {
    /// `value` with exactly `decimals` decimals: `fixed(3.14159, decimals: 2)` is "3.14". A value that rounds to zero
    /// has no sign ("0.0", not "-0.0"); non-finite and huge values print as Swift writes them.
    public static func fixed(_ value: Double, decimals: Int) -> String {
        var scale = 1.0
        for _ in 0 ..< max(decimals, 0) { scale *= 10 }
        let scaledMagnitude = (abs(value) * scale).rounded()
        // Beyond 2⁶² the integer conversion below could trap; such values have no meaningful decimals anyway.
        guard value.isFinite, scaledMagnitude < 0x1p62 else { return "\(value)" }
        let scaled = Int(scaledMagnitude)
        let unit = Int(scale)
        let sign = value < 0 && scaled != 0 ? "-" : ""
        guard decimals > 0 else { return sign + String(scaled) }
        let fraction = String(scaled % unit)
        return sign + String(scaled / unit) + "." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }

    /// One decimal: "12.3".
    public static func decimal1(_ value: Double) -> String { fixed(value, decimals: 1) }

    /// A fraction as a percentage with one decimal: 0.1234 → "12.3%"; nil (nothing measured) → `missing`.
    public static func percent(_ fraction: Double?, missing: String = "n/a") -> String {
        guard let fraction else { return missing }
        return decimal1(fraction * 100) + "%"
    }

    /// Scientific notation with a one-decimal mantissa: 0.000123 → "1.2e-4". Zero, negative and non-finite values
    /// print as Swift writes them (the only use is an error magnitude).
    public static func scientific1(_ value: Double) -> String {
        guard value > 0, value.isFinite else { return "\(value)" }
        var exponent = 0
        var mantissa = value
        while mantissa >= 10 { mantissa /= 10; exponent += 1 }
        while mantissa < 1 { mantissa *= 10; exponent -= 1 }
        return "\(decimal1(mantissa))e\(exponent)"
    }
}
