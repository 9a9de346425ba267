//! The identity of a client certificate (mutual TLS): its subject Common Name, else its first
//! DNS, e-mail or URI Subject Alternative Name. With `auth.use_identity_as_username` it
//! becomes the client's user name (as mosquitto's `use_identity_as_username`), so the ACL's
//! `user` sections and `%u` patterns apply to it.
//!
//! The certificate has already been verified against `tls.client_ca` by rustls when this runs.

/// The identity of the DER certificate `der`, or `None` when it has neither a usable CN nor
/// a usable SAN (or does not parse).
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let usable = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .find(|cn| usable(cn))
    {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) if usable(s) => {
            Some((*s).to_owned())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_first_then_first_san() {
        assert_eq!(
            certificate_identity(&cert(Some("alice"), &["alice.example"])),
            Some("alice".into())
        );
        assert_eq!(
            certificate_identity(&cert(None, &["sensor-7.example", "other"])),
            Some("sensor-7.example".into())
        );
        assert_eq!(certificate_identity(&cert(None, &[])), None);
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }
}
