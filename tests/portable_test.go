package tests

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestPortableKeyThroughTheSDK: a key of the portable mechanism, chosen
// with the hsmkms:mechanism tag as an AWS client can, makes data keys bound
// to their encryption context through the built server.
func TestPortableKeyThroughTheSDK(t *testing.T) {
	s := newSandbox(t)
	devDir := t.TempDir()
	srv := s.startDev(devDir)
	c := devCluster(t, s, devDir, srv)
	r := devReplica(c, srv)
	ctx := ctxT(t)
	k := r.kms(c.root)
	out, err := k.CreateKey(ctx, &kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("hsmkms:mechanism"), TagValue: aws.String("aes-cbc-hmac")}}})
	if err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"tenant": "a"}
	dk, err := k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: out.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	if dk.CiphertextBlob[3] != 3 {
		t.Errorf("the blob's mechanism byte is %d, want 3 (aes-cbc-hmac)", dk.CiphertextBlob[3])
	}
	dec, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: encCtx})
	if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Fatalf("Decrypt: %v", err)
	}
	_, err = k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "b"}})
	var invalid *types.InvalidCiphertextException
	if !errors.As(err, &invalid) {
		t.Errorf("Decrypt with another context: %v, want InvalidCiphertextException", err)
	}
}
