package cli

import "strings"

// examples are the commands' help examples, by command path, for those
// whose Description does not carry one.
var examples = map[string]string{
	"serve":                   "hsmkms serve --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label kms --pin-file /etc/hsmkms/pin --tls-cert cert.pem --tls-key key.pem",
	"bench":                   "hsmkms bench --endpoint http://127.0.0.1:8080 --op GenerateDataKey --concurrency 16 --duration 10s",
	"bench-target":            "hsmkms bench-target --listen 127.0.0.1:9000",
	"slot list":               "hsmkms slot list --pkcs11-module /usr/lib/softhsm/libsofthsm2.so",
	"token info":              "HSMKMS_PIN=1234 hsmkms token info --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label kms",
	"token mechanisms":        "HSMKMS_PIN=1234 hsmkms token mechanisms --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label kms",
	"softhsm init":            "HSMKMS_PIN=1234 hsmkms softhsm init --dir /tmp/tok --label ci",
	"doctor":                  "hsmkms doctor --dev-dir .hsmkms",
	"store migrate":           "hsmkms store migrate --from /var/lib/hsmkms/hsmkms.db --to postgres://hsmkms@db/hsmkms --pkcs11-module M --token-label kms",
	"restore":                 "hsmkms restore --from snapshot.db --data-dir /var/lib/hsmkms",
	"key create":              "hsmkms key create --description billing --alias billing\n  hsmkms key create --spec HMAC_256",
	"key describe":            "hsmkms key describe alias/billing",
	"key enable":              "hsmkms key enable alias/billing",
	"key disable":             "hsmkms key disable alias/billing --yes",
	"key schedule-deletion":   "hsmkms key schedule-deletion alias/old --days 7 --yes",
	"key cancel-deletion":     "hsmkms key cancel-deletion alias/old",
	"key update-description":  "hsmkms key update-description alias/billing \"billing, 2027\"",
	"key tag":                 "hsmkms key tag alias/billing --tag team=finance",
	"key untag":               "hsmkms key untag alias/billing --tag-key team",
	"key rotate":              "hsmkms key rotate alias/billing",
	"key rotations":           "hsmkms key rotations alias/billing",
	"key rotation enable":     "hsmkms key rotation enable alias/billing --days 90",
	"key rotation disable":    "hsmkms key rotation disable alias/billing",
	"key rotation status":     "hsmkms key rotation status alias/billing",
	"alias create":            "hsmkms alias create alias/billing 1234abcd-12ab-34cd-56ef-1234567890ab",
	"alias update":            "hsmkms alias update alias/billing 5678efgh-56ef-78ab-90cd-567890abcdef",
	"alias delete":            "hsmkms alias delete alias/billing --yes",
	"alias list":              "hsmkms alias list --key 1234abcd-12ab-34cd-56ef-1234567890ab",
	"principal create":        "hsmkms principal create billing-app --allow encrypt-files=alias/billing --print credentials-file > billing.credentials",
	"principal list":          "hsmkms principal list -o json",
	"principal rotate-secret": "hsmkms principal rotate-secret billing-app --yes --print env",
	"principal delete":        "hsmkms principal delete billing-app --yes",
	"datakey":                 "hsmkms datakey --key alias/billing --spec AES_256 --context team=finance",
	"datakey-pair":            "hsmkms datakey-pair --key alias/billing --spec ECC_NIST_P256 --context team=finance",
	"encrypt-value":           "printf secret | hsmkms encrypt-value --key alias/billing --in - --base64",
	"decrypt-value":           "hsmkms decrypt-value --in value.b64 --base64",
	"re-encrypt":              "hsmkms re-encrypt --key alias/billing-2027 --in value.enc > value.new.enc",
	"sign":                    "hsmkms sign --key alias/signing --algorithm ECDSA_SHA_256 --in release.tar.gz > release.sig",
	"verify":                  "hsmkms verify --key alias/signing --algorithm ECDSA_SHA_256 --in release.tar.gz --signature release.sig",
	"encrypt":                 "hsmkms encrypt --key alias/billing --context team=finance --in report.csv --out report.csv.encrypted",
	"decrypt":                 "hsmkms decrypt --context team=finance --in report.csv.encrypted --out report.csv",
	"xks store create":        "hsmkms xks store create tenant1",
	"xks store list":          "hsmkms xks store list",
	"xks store delete":        "hsmkms xks store delete tenant1 --yes",
	"xks store policy":        "hsmkms xks store policy tenant1 --policy policy.json",
	"xks key allow":           "hsmkms xks key allow tenant1 billing --usage ENCRYPT,DECRYPT",
	"xks key deny":            "hsmkms xks key deny tenant1 billing",
	"xks credential add":      "hsmkms xks credential add tenant1 -o json > xks-credential.json",
	"xks credential remove":   "hsmkms xks credential remove tenant1 ABCDEFGHIJKLMNOPQRSTUVWXYZ",
	"backup":                  "hsmkms backup --out /backup/hsmkms-$(date +%F).db",
}

// withExample appends the example of the command at path to its
// description.
func withExample(desc *string, path string) {
	ex, ok := examples[path]
	if !ok || strings.Contains(*desc, "Example") {
		return
	}
	if *desc != "" {
		*desc += "\n\n"
	}
	*desc += "Example:\n  " + ex
}
