package service

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// The request and response shapes carry AWS KMS's JSON member names, so
// the API layer decodes and encodes them as they are. []byte members are
// base64 in JSON, as AWS has them.

// EpochTime is a time that marshals as fractional epoch seconds, the AWS
// JSON 1.1 timestamp format.
type EpochTime time.Time

// MarshalJSON writes seconds since the epoch.
func (t EpochTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	return strconv.AppendFloat(nil, float64(tt.UnixNano())/1e9, 'f', -1, 64), nil
}

// maxEpochSeconds is the last second of the year 9999, the latest time
// EpochTime reads: past about 9.2e9 seconds int64 nanoseconds overflow,
// and 1e300 read as a date in 1677 (found by review).
const maxEpochSeconds = 253402300799

// errEpoch is what UnmarshalJSON answers a value that is no time it reads.
var errEpoch = errors.New("expected a number of seconds since the epoch, 0 to 253402300799")

// UnmarshalJSON reads seconds since the epoch.
func (t *EpochTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxEpochSeconds {
		return errEpoch
	}
	sec, frac := math.Modf(f)
	*t = EpochTime(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}

func epoch(t time.Time) *EpochTime {
	if t.IsZero() {
		return nil
	}
	e := EpochTime(t)
	return &e
}

// Tag is a key tag.
type Tag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

// KeyMetadata describes a key as DescribeKey and CreateKey return it.
type KeyMetadata struct {
	AWSAccountId                string     `json:"AWSAccountId"`
	KeyId                       string     `json:"KeyId"`
	Arn                         string     `json:"Arn"`
	CreationDate                *EpochTime `json:"CreationDate,omitempty"`
	Enabled                     bool       `json:"Enabled"`
	Description                 string     `json:"Description"`
	KeyUsage                    string     `json:"KeyUsage"`
	KeyState                    string     `json:"KeyState"`
	DeletionDate                *EpochTime `json:"DeletionDate,omitempty"`
	PendingDeletionWindowInDays int        `json:"PendingDeletionWindowInDays,omitempty"`
	Origin                      string     `json:"Origin"`
	ExpirationModel             string     `json:"ExpirationModel,omitempty"`
	ValidTo                     *EpochTime `json:"ValidTo,omitempty"`
	KeyManager                  string     `json:"KeyManager"`
	CustomerMasterKeySpec       string     `json:"CustomerMasterKeySpec"`
	KeySpec                     string     `json:"KeySpec"`
	EncryptionAlgorithms        []string   `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms           []string   `json:"SigningAlgorithms,omitempty"`
	MacAlgorithms               []string   `json:"MacAlgorithms,omitempty"`
	MultiRegion                 bool       `json:"MultiRegion"`
	// HsmkmsMechanism is hsmkms's own member: how data keys are protected
	// on the token (aes-gcm, aes-kw or aes-cbc-hmac). AWS clients ignore it.
	HsmkmsMechanism string `json:"HsmkmsMechanism,omitempty"`
	// CurrentKeyMaterialId names the version that encrypts now.
	CurrentKeyMaterialId string `json:"CurrentKeyMaterialId,omitempty"`
}

// CreateKeyInput is CreateKey's request.
type CreateKeyInput struct {
	Description string `json:"Description"`
	KeyUsage    string `json:"KeyUsage"`
	KeySpec     string `json:"KeySpec"`
	// CustomerMasterKeySpec is the deprecated name of KeySpec.
	CustomerMasterKeySpec string `json:"CustomerMasterKeySpec"`
	Origin                string `json:"Origin"`
	MultiRegion           bool   `json:"MultiRegion"`
	Tags                  []Tag  `json:"Tags"`
	// Policy (a key policy document) is not supported: access is decided by
	// principals' policies.
	Policy string `json:"Policy"`
	// BypassPolicyLockoutSafetyCheck is accepted and ignored.
	BypassPolicyLockoutSafetyCheck bool `json:"BypassPolicyLockoutSafetyCheck"`
	// HsmkmsMechanism chooses aes-gcm (the default where the token has it),
	// aes-kw or aes-cbc-hmac (the default on tokens without AES-GCM) for
	// symmetric keys;
	// the tag "hsmkms:mechanism" does the same for clients that cannot send
	// extra members.
	HsmkmsMechanism string `json:"HsmkmsMechanism"`
}

// KeyOutput is the response of CreateKey and DescribeKey.
type KeyOutput struct {
	KeyMetadata KeyMetadata `json:"KeyMetadata"`
}

// KeyIDInput is the request of the operations that only name a key.
type KeyIDInput struct {
	KeyId string `json:"KeyId"`
}

// KeyIDOutput is the response of the operations that only return a key ID.
type KeyIDOutput struct {
	KeyId string `json:"KeyId"`
}

// ListInput is a paginated list request.
type ListInput struct {
	Limit  int    `json:"Limit"`
	Marker string `json:"Marker"`
}

// KeyListEntry is one key in ListKeys.
type KeyListEntry struct {
	KeyId  string `json:"KeyId"`
	KeyArn string `json:"KeyArn"`
}

// ListKeysOutput is ListKeys' response.
type ListKeysOutput struct {
	Keys       []KeyListEntry `json:"Keys"`
	NextMarker string         `json:"NextMarker,omitempty"`
	Truncated  bool           `json:"Truncated"`
}

// ScheduleKeyDeletionInput is ScheduleKeyDeletion's request.
type ScheduleKeyDeletionInput struct {
	KeyId               string `json:"KeyId"`
	PendingWindowInDays int    `json:"PendingWindowInDays"`
}

// ScheduleKeyDeletionOutput is ScheduleKeyDeletion's response.
type ScheduleKeyDeletionOutput struct {
	KeyId               string     `json:"KeyId"`
	DeletionDate        *EpochTime `json:"DeletionDate"`
	KeyState            string     `json:"KeyState"`
	PendingWindowInDays int        `json:"PendingWindowInDays"`
}

// EnableKeyRotationInput is EnableKeyRotation's request.
type EnableKeyRotationInput struct {
	KeyId                string `json:"KeyId"`
	RotationPeriodInDays int    `json:"RotationPeriodInDays"`
}

// GetKeyRotationStatusOutput is GetKeyRotationStatus's response.
type GetKeyRotationStatusOutput struct {
	KeyRotationEnabled   bool       `json:"KeyRotationEnabled"`
	KeyId                string     `json:"KeyId"`
	RotationPeriodInDays int        `json:"RotationPeriodInDays,omitempty"`
	NextRotationDate     *EpochTime `json:"NextRotationDate,omitempty"`
}

// ListKeyRotationsInput is ListKeyRotations' request.
type ListKeyRotationsInput struct {
	KeyId  string `json:"KeyId"`
	Limit  int    `json:"Limit"`
	Marker string `json:"Marker"`
}

// Rotation is one entry of ListKeyRotations: a version after the first.
type Rotation struct {
	KeyId         string     `json:"KeyId"`
	KeyMaterialId string     `json:"KeyMaterialId"`
	RotationDate  *EpochTime `json:"RotationDate"`
	RotationType  string     `json:"RotationType"`
}

// ListKeyRotationsOutput is ListKeyRotations' response.
type ListKeyRotationsOutput struct {
	Rotations  []Rotation `json:"Rotations"`
	NextMarker string     `json:"NextMarker,omitempty"`
	Truncated  bool       `json:"Truncated"`
}

// AliasInput is the request of CreateAlias and UpdateAlias.
type AliasInput struct {
	AliasName   string `json:"AliasName"`
	TargetKeyId string `json:"TargetKeyId"`
}

// DeleteAliasInput is DeleteAlias's request.
type DeleteAliasInput struct {
	AliasName string `json:"AliasName"`
}

// ListAliasesInput is ListAliases' request.
type ListAliasesInput struct {
	KeyId  string `json:"KeyId"`
	Limit  int    `json:"Limit"`
	Marker string `json:"Marker"`
}

// AliasListEntry is one alias in ListAliases.
type AliasListEntry struct {
	AliasName       string     `json:"AliasName"`
	AliasArn        string     `json:"AliasArn"`
	TargetKeyId     string     `json:"TargetKeyId"`
	CreationDate    *EpochTime `json:"CreationDate,omitempty"`
	LastUpdatedDate *EpochTime `json:"LastUpdatedDate,omitempty"`
}

// ListAliasesOutput is ListAliases' response.
type ListAliasesOutput struct {
	Aliases    []AliasListEntry `json:"Aliases"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

// EncryptInput is Encrypt's request.
type EncryptInput struct {
	KeyId               string            `json:"KeyId"`
	Plaintext           []byte            `json:"Plaintext"`
	EncryptionContext   map[string]string `json:"EncryptionContext"`
	EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
	GrantTokens         []string          `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// EncryptOutput is Encrypt's response.
type EncryptOutput struct {
	CiphertextBlob      []byte `json:"CiphertextBlob"`
	KeyId               string `json:"KeyId"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
}

// DecryptInput is Decrypt's request.
type DecryptInput struct {
	CiphertextBlob      []byte            `json:"CiphertextBlob"`
	EncryptionContext   map[string]string `json:"EncryptionContext"`
	KeyId               string            `json:"KeyId"`
	EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
	GrantTokens         []string          `json:"GrantTokens"`
	// Recipient is refused (see RecipientInfo).
	Recipient *RecipientInfo `json:"Recipient"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// DecryptOutput is Decrypt's response.
type DecryptOutput struct {
	KeyId               string `json:"KeyId"`
	Plaintext           []byte `json:"Plaintext"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	KeyMaterialId       string `json:"KeyMaterialId,omitempty"`
}

// ReEncryptInput is ReEncrypt's request.
type ReEncryptInput struct {
	CiphertextBlob                 []byte            `json:"CiphertextBlob"`
	SourceEncryptionContext        map[string]string `json:"SourceEncryptionContext"`
	SourceKeyId                    string            `json:"SourceKeyId"`
	DestinationKeyId               string            `json:"DestinationKeyId"`
	DestinationEncryptionContext   map[string]string `json:"DestinationEncryptionContext"`
	SourceEncryptionAlgorithm      string            `json:"SourceEncryptionAlgorithm"`
	DestinationEncryptionAlgorithm string            `json:"DestinationEncryptionAlgorithm"`
	GrantTokens                    []string          `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// ReEncryptOutput is ReEncrypt's response.
type ReEncryptOutput struct {
	CiphertextBlob                 []byte `json:"CiphertextBlob"`
	SourceKeyId                    string `json:"SourceKeyId"`
	KeyId                          string `json:"KeyId"`
	SourceEncryptionAlgorithm      string `json:"SourceEncryptionAlgorithm"`
	DestinationEncryptionAlgorithm string `json:"DestinationEncryptionAlgorithm"`
}

// GenerateDataKeyInput is the request of GenerateDataKey and
// GenerateDataKeyWithoutPlaintext.
type GenerateDataKeyInput struct {
	KeyId             string            `json:"KeyId"`
	KeySpec           string            `json:"KeySpec"`
	NumberOfBytes     int               `json:"NumberOfBytes"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
	GrantTokens       []string          `json:"GrantTokens"`
	// Recipient is refused (see RecipientInfo).
	Recipient *RecipientInfo `json:"Recipient"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// RecipientInfo is the Recipient member of Decrypt, GenerateDataKey and
// GenerateRandom: an AWS Nitro Enclaves attestation document whose public
// key AWS KMS encrypts the result to, so that the plaintext never reaches
// the enclave's parent instance, which relays the call. hsmkms cannot do
// that, and refuses such a request instead of answering it in plaintext,
// which would hand the secret to exactly the party the caller kept it from.
type RecipientInfo struct {
	KeyEncryptionAlgorithm string `json:"KeyEncryptionAlgorithm"`
	AttestationDocument    []byte `json:"AttestationDocument"`
}

// GenerateDataKeyOutput is the response of GenerateDataKey; Plaintext is
// empty for GenerateDataKeyWithoutPlaintext.
type GenerateDataKeyOutput struct {
	CiphertextBlob []byte `json:"CiphertextBlob"`
	Plaintext      []byte `json:"Plaintext,omitempty"`
	KeyId          string `json:"KeyId"`
	KeyMaterialId  string `json:"KeyMaterialId,omitempty"`
}

// GenerateRandomInput is GenerateRandom's request.
type GenerateRandomInput struct {
	NumberOfBytes int `json:"NumberOfBytes"`
	// Recipient is refused (see RecipientInfo).
	Recipient *RecipientInfo `json:"Recipient"`
}

// GenerateRandomOutput is GenerateRandom's response.
type GenerateRandomOutput struct {
	Plaintext []byte `json:"Plaintext"`
}

// SignInput is Sign's request.
type SignInput struct {
	KeyId            string   `json:"KeyId"`
	Message          []byte   `json:"Message"`
	MessageType      string   `json:"MessageType"`
	SigningAlgorithm string   `json:"SigningAlgorithm"`
	GrantTokens      []string `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// SignOutput is Sign's response.
type SignOutput struct {
	KeyId            string `json:"KeyId"`
	Signature        []byte `json:"Signature"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

// VerifyInput is Verify's request.
type VerifyInput struct {
	KeyId            string   `json:"KeyId"`
	Message          []byte   `json:"Message"`
	MessageType      string   `json:"MessageType"`
	Signature        []byte   `json:"Signature"`
	SigningAlgorithm string   `json:"SigningAlgorithm"`
	GrantTokens      []string `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// VerifyOutput is Verify's response.
type VerifyOutput struct {
	KeyId            string `json:"KeyId"`
	SignatureValid   bool   `json:"SignatureValid"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

// GetPublicKeyOutput is GetPublicKey's response.
type GetPublicKeyOutput struct {
	KeyId                 string   `json:"KeyId"`
	PublicKey             []byte   `json:"PublicKey"`
	CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
	KeySpec               string   `json:"KeySpec"`
	KeyUsage              string   `json:"KeyUsage"`
	SigningAlgorithms     []string `json:"SigningAlgorithms,omitempty"`
	EncryptionAlgorithms  []string `json:"EncryptionAlgorithms,omitempty"`
}

// GenerateMacInput is GenerateMac's request.
type GenerateMacInput struct {
	KeyId        string   `json:"KeyId"`
	Message      []byte   `json:"Message"`
	MacAlgorithm string   `json:"MacAlgorithm"`
	GrantTokens  []string `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// GenerateMacOutput is GenerateMac's response.
type GenerateMacOutput struct {
	KeyId        string `json:"KeyId"`
	Mac          []byte `json:"Mac"`
	MacAlgorithm string `json:"MacAlgorithm"`
}

// VerifyMacInput is VerifyMac's request.
type VerifyMacInput struct {
	KeyId        string   `json:"KeyId"`
	Message      []byte   `json:"Message"`
	Mac          []byte   `json:"Mac"`
	MacAlgorithm string   `json:"MacAlgorithm"`
	GrantTokens  []string `json:"GrantTokens"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// VerifyMacOutput is VerifyMac's response.
type VerifyMacOutput struct {
	KeyId        string `json:"KeyId"`
	MacValid     bool   `json:"MacValid"`
	MacAlgorithm string `json:"MacAlgorithm"`
}

// TagResourceInput is TagResource's request.
type TagResourceInput struct {
	KeyId string `json:"KeyId"`
	Tags  []Tag  `json:"Tags"`
}

// UntagResourceInput is UntagResource's request.
type UntagResourceInput struct {
	KeyId   string   `json:"KeyId"`
	TagKeys []string `json:"TagKeys"`
}

// ListResourceTagsInput is ListResourceTags' request.
type ListResourceTagsInput struct {
	KeyId string `json:"KeyId"`
	// Limit is 1 to 50 (default 50); Marker is the NextMarker of the
	// page before.
	Limit  int    `json:"Limit"`
	Marker string `json:"Marker"`
}

// ListResourceTagsOutput is ListResourceTags' response.
type ListResourceTagsOutput struct {
	Tags       []Tag  `json:"Tags"`
	Truncated  bool   `json:"Truncated"`
	NextMarker string `json:"NextMarker,omitempty"`
}

// GetKeyPolicyInput is GetKeyPolicy's request. PolicyName, when given,
// must be "default".
type GetKeyPolicyInput struct {
	KeyId      string `json:"KeyId"`
	PolicyName string `json:"PolicyName"`
}

// GetKeyPolicyOutput is GetKeyPolicy's response.
type GetKeyPolicyOutput struct {
	Policy     string `json:"Policy"`
	PolicyName string `json:"PolicyName"`
}

// ListKeyPoliciesInput is ListKeyPolicies' request.
type ListKeyPoliciesInput struct {
	KeyId  string `json:"KeyId"`
	Limit  int    `json:"Limit"`
	Marker string `json:"Marker"`
}

// ListKeyPoliciesOutput is ListKeyPolicies' response.
type ListKeyPoliciesOutput struct {
	PolicyNames []string `json:"PolicyNames"`
	Truncated   bool     `json:"Truncated"`
	NextMarker  string   `json:"NextMarker,omitempty"`
}

// PutKeyPolicyInput is PutKeyPolicy's request, which is refused.
type PutKeyPolicyInput struct {
	KeyId                          string `json:"KeyId"`
	PolicyName                     string `json:"PolicyName"`
	Policy                         string `json:"Policy"`
	BypassPolicyLockoutSafetyCheck bool   `json:"BypassPolicyLockoutSafetyCheck"`
}
