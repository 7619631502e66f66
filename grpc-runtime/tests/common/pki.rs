//! Test certificates made with rcgen: a CA ([`TestCa`]) and the server and client
//! identities it signs, as PEM text.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate (chain) and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
}

/// A CA that signs test certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A self-signed CA with common name `cn`.
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        TestCa {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// The CA certificate, PEM (what a peer trusts).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Identity {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate whose subject is only the common name `cn`.
    pub fn client(&self, cn: &str) -> Identity {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    /// A certificate from `params` (SANs, names and usages as the test needs), signed by
    /// this CA with a new key.
    pub fn sign(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        Identity {
            cert: params.signed_by(&key, &self.cert, &self.key).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A CA and a server certificate for `names`, as PEM: (ca_pem, cert_pem, key_pem).
pub fn test_pki(names: &[&str]) -> (String, String, String) {
    let ca = TestCa::new("grpc-rust test CA");
    let server = ca.server(names);
    (ca.pem(), server.cert, server.key)
}
