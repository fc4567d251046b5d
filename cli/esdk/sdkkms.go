package esdk

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// SDKKMS is the KMS of an AWS SDK for Go v2 KMS client, as the AWS
// Encryption SDK's KMS keyring uses it.
type SDKKMS struct {
	Client *kms.Client
}

// GenerateDataKey calls GenerateDataKey with KeySpec AES_256 and the
// encryption context, and returns the response's plaintext, ciphertext
// blob and key ARN.
func (s SDKKMS) GenerateDataKey(ctx context.Context, keyID string, encCtx map[string]string) ([]byte, []byte, string, error) {
	out, err := s.Client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, nil, "", err
	}
	return out.Plaintext, out.CiphertextBlob, aws.ToString(out.KeyId), nil
}

// Decrypt calls Decrypt with KeyId = keyARN and the encryption context, and
// checks that the response names the same key, as the AWS Encryption SDK's
// KMS keyring does.
func (s SDKKMS) Decrypt(ctx context.Context, blob []byte, keyARN string, encCtx map[string]string) ([]byte, error) {
	out, err := s.Client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    blob,
		KeyId:             aws.String(keyARN),
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, err
	}
	if got := aws.ToString(out.KeyId); got != keyARN {
		clear(out.Plaintext)
		return nil, fmt.Errorf("esdk: KMS decrypted with %s, not %s", got, keyARN)
	}
	return out.Plaintext, nil
}

// Encrypt calls Encrypt with the data key as plaintext and the encryption
// context, and returns the ciphertext blob and the key ARN, as the AWS
// Encryption SDK's KMS keyring does for the keys beside its generator.
func (s SDKKMS) Encrypt(ctx context.Context, keyID string, dataKey []byte, encCtx map[string]string) ([]byte, string, error) {
	out, err := s.Client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(keyID),
		Plaintext:         dataKey,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, "", err
	}
	return out.CiphertextBlob, aws.ToString(out.KeyId), nil
}
