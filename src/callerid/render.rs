//! Writing the chosen identity into header values: From, P-Asserted-Identity.
//!
//! Names come from an operator's CSV, so they are treated as untrusted text: a
//! display name is always written as an RFC 3261 quoted-string, `"` and `\` are
//! escaped and control characters (CR and LF above all, which would let a name
//! inject header lines) are never written.

use std::fmt::Write;

/// Which P-Asserted-Identity forms a forwarded INVITE carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaiForm {
    #[default]
    Sip,
    Tel,
    Both,
}

/// Appends `name` as a quoted-string, or nothing when it is empty after
/// removing control characters. Returns whether anything was written.
pub fn write_display_name(out: &mut String, name: &str) -> bool {
    if !name.chars().any(|c| !c.is_control()) {
        return false;
    }
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    true
}

/// The identity a call presents, borrowed from the caller-ID decision.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub number: &'a str,
    pub name: &'a str,
    pub anonymous: bool,
}

/// `"<name>" <sip:<e164>@<domain>;user=phone>` (no display name when empty).
pub fn sip_name_addr(out: &mut String, id: &Presented<'_>, domain: &str) {
    if write_display_name(out, id.name) {
        out.push(' ');
    }
    let _ = write!(out, "<sip:{}@{};user=phone>", id.number, domain);
}

/// The name-addr put into From: the real identity, or the RFC 3323 anonymous
/// form when privacy is requested (the real one then travels only in PAI).
pub fn from_name_addr(id: &Presented<'_>, domain: &str) -> String {
    let mut out = String::with_capacity(64 + id.name.len());
    if id.anonymous {
        out.push_str("\"Anonymous\" <sip:anonymous@anonymous.invalid>");
    } else {
        sip_name_addr(&mut out, id, domain);
    }
    out
}

/// The complete `P-Asserted-Identity` header line (CRLF included). With `Both`,
/// one header carries the sip and the tel value (RFC 3325 §9.1 allows one of each).
pub fn pai_line(id: &Presented<'_>, domain: &str, form: PaiForm) -> String {
    let mut out = String::with_capacity(96 + 2 * id.name.len());
    out.push_str("P-Asserted-Identity: ");
    let tel = |out: &mut String| {
        if write_display_name(out, id.name) {
            out.push(' ');
        }
        let _ = write!(out, "<tel:{}>", id.number);
    };
    match form {
        PaiForm::Sip => sip_name_addr(&mut out, id, domain),
        PaiForm::Tel => tel(&mut out),
        PaiForm::Both => {
            sip_name_addr(&mut out, id, domain);
            out.push_str(", ");
            tel(&mut out);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(name: &'a str) -> Presented<'a> {
        Presented {
            number: "+14155550100",
            name,
            anonymous: false,
        }
    }

    #[test]
    fn names_are_quoted_escaped_and_cleaned() {
        assert_eq!(
            from_name_addr(&id("Sales \"West\" \\ Team"), "gw.example.net"),
            r#""Sales \"West\" \\ Team" <sip:+14155550100@gw.example.net;user=phone>"#
        );
        assert_eq!(
            from_name_addr(&id("Evil\r\nVia: x"), "d"),
            "\"EvilVia: x\" <sip:+14155550100@d;user=phone>"
        );
        assert_eq!(
            from_name_addr(&id(""), "d"),
            "<sip:+14155550100@d;user=phone>"
        );
        assert_eq!(
            from_name_addr(&id("\r\n"), "d"),
            "<sip:+14155550100@d;user=phone>"
        );
        assert_eq!(
            from_name_addr(&id("Zürich Büro"), "d"),
            "\"Zürich Büro\" <sip:+14155550100@d;user=phone>"
        );
    }

    #[test]
    fn pai_forms() {
        let i = id("Sales");
        assert_eq!(
            pai_line(&i, "d", PaiForm::Sip),
            "P-Asserted-Identity: \"Sales\" <sip:+14155550100@d;user=phone>\r\n"
        );
        assert_eq!(
            pai_line(&i, "d", PaiForm::Tel),
            "P-Asserted-Identity: \"Sales\" <tel:+14155550100>\r\n"
        );
        assert_eq!(
            pai_line(&i, "d", PaiForm::Both),
            "P-Asserted-Identity: \"Sales\" <sip:+14155550100@d;user=phone>, \"Sales\" <tel:+14155550100>\r\n"
        );
    }

    #[test]
    fn anonymous_from() {
        let mut i = id("Sales");
        i.anonymous = true;
        assert_eq!(
            from_name_addr(&i, "d"),
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>"
        );
    }
}
