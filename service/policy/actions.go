package policy

// Action names, as they appear in a Request and in policy statements. Every
// KMS operation hsmkms implements is one action in the "kms:" namespace. The
// administrative operations (principals, token information) are actions in
// the "hsmkms:" namespace, so that "kms:*", a grant of every key operation,
// never grants the power to make principals or to delete them.
const (
	// ActionCreateKey is the action of CreateKey.
	ActionCreateKey = "kms:CreateKey"
	// ActionDescribeKey is the action of DescribeKey.
	ActionDescribeKey = "kms:DescribeKey"
	// ActionListKeys is the action of ListKeys.
	ActionListKeys = "kms:ListKeys"
	// ActionEnableKey is the action of EnableKey.
	ActionEnableKey = "kms:EnableKey"
	// ActionDisableKey is the action of DisableKey.
	ActionDisableKey = "kms:DisableKey"
	// ActionScheduleKeyDeletion is the action of ScheduleKeyDeletion.
	ActionScheduleKeyDeletion = "kms:ScheduleKeyDeletion"
	// ActionCancelKeyDeletion is the action of CancelKeyDeletion.
	ActionCancelKeyDeletion = "kms:CancelKeyDeletion"
	// ActionRotateKeyOnDemand is the action of RotateKeyOnDemand.
	ActionRotateKeyOnDemand = "kms:RotateKeyOnDemand"
	// ActionEnableKeyRotation is the action of EnableKeyRotation.
	ActionEnableKeyRotation = "kms:EnableKeyRotation"
	// ActionDisableKeyRotation is the action of DisableKeyRotation.
	ActionDisableKeyRotation = "kms:DisableKeyRotation"
	// ActionGetKeyRotationStatus is the action of GetKeyRotationStatus.
	ActionGetKeyRotationStatus = "kms:GetKeyRotationStatus"
	// ActionListKeyRotations is the action of ListKeyRotations.
	ActionListKeyRotations = "kms:ListKeyRotations"
	// ActionGetKeyPolicy is the action of GetKeyPolicy.
	ActionGetKeyPolicy = "kms:GetKeyPolicy"
	// ActionListKeyPolicies is the action of ListKeyPolicies.
	ActionListKeyPolicies = "kms:ListKeyPolicies"
	// ActionPutKeyPolicy is the action of PutKeyPolicy, which is refused
	// once allowed: keys' policies cannot change.
	ActionPutKeyPolicy = "kms:PutKeyPolicy"
	// ActionCreateAlias is the action of CreateAlias; it is checked against
	// the alias and against the target key.
	ActionCreateAlias = "kms:CreateAlias"
	// ActionUpdateAlias is the action of UpdateAlias; it is checked against
	// the alias and against the keys involved.
	ActionUpdateAlias = "kms:UpdateAlias"
	// ActionDeleteAlias is the action of DeleteAlias; it is checked against
	// the alias and against the key it points at.
	ActionDeleteAlias = "kms:DeleteAlias"
	// ActionListAliases is the action of ListAliases.
	ActionListAliases = "kms:ListAliases"
	// ActionEncrypt is the action of Encrypt.
	ActionEncrypt = "kms:Encrypt"
	// ActionDecrypt is the action of Decrypt.
	ActionDecrypt = "kms:Decrypt"
	// ActionReEncryptFrom is the ReEncrypt action checked against the source
	// key (as in AWS, ReEncrypt needs ReEncryptFrom on the source key and
	// ReEncryptTo on the destination key).
	ActionReEncryptFrom = "kms:ReEncryptFrom"
	// ActionReEncryptTo is the ReEncrypt action checked against the
	// destination key.
	ActionReEncryptTo = "kms:ReEncryptTo"
	// ActionGenerateDataKey is the action of GenerateDataKey.
	ActionGenerateDataKey = "kms:GenerateDataKey"
	// ActionGenerateDataKeyWithoutPlaintext is the action of
	// GenerateDataKeyWithoutPlaintext.
	ActionGenerateDataKeyWithoutPlaintext = "kms:GenerateDataKeyWithoutPlaintext"
	// ActionGenerateDataKeyPair is the action of GenerateDataKeyPair.
	ActionGenerateDataKeyPair = "kms:GenerateDataKeyPair"
	// ActionGenerateDataKeyPairWithoutPlaintext is the action of
	// GenerateDataKeyPairWithoutPlaintext.
	ActionGenerateDataKeyPairWithoutPlaintext = "kms:GenerateDataKeyPairWithoutPlaintext"
	// ActionGenerateRandom is the action of GenerateRandom.
	ActionGenerateRandom = "kms:GenerateRandom"
	// ActionSign is the action of Sign.
	ActionSign = "kms:Sign"
	// ActionVerify is the action of Verify.
	ActionVerify = "kms:Verify"
	// ActionGenerateMac is the action of GenerateMac.
	ActionGenerateMac = "kms:GenerateMac"
	// ActionVerifyMac is the action of VerifyMac.
	ActionVerifyMac = "kms:VerifyMac"
	// ActionGetParametersForImport is the action of GetParametersForImport.
	ActionGetParametersForImport = "kms:GetParametersForImport"
	// ActionImportKeyMaterial is the action of ImportKeyMaterial.
	ActionImportKeyMaterial = "kms:ImportKeyMaterial"
	// ActionDeleteImportedKeyMaterial is the action of
	// DeleteImportedKeyMaterial.
	ActionDeleteImportedKeyMaterial = "kms:DeleteImportedKeyMaterial"
	// ActionCreateGrant is the action of CreateGrant.
	ActionCreateGrant = "kms:CreateGrant"
	// ActionListGrants is the action of ListGrants.
	ActionListGrants = "kms:ListGrants"
	// ActionListRetirableGrants is the action of ListRetirableGrants; it
	// names no key.
	ActionListRetirableGrants = "kms:ListRetirableGrants"
	// ActionRetireGrant is the action of RetireGrant by a principal that
	// is neither the grant's retiring principal nor its grantee.
	ActionRetireGrant = "kms:RetireGrant"
	// ActionRevokeGrant is the action of RevokeGrant.
	ActionRevokeGrant = "kms:RevokeGrant"
	// ActionGetPublicKey is the action of GetPublicKey.
	ActionGetPublicKey = "kms:GetPublicKey"
	// ActionUpdateKeyDescription is the action of UpdateKeyDescription.
	ActionUpdateKeyDescription = "kms:UpdateKeyDescription"
	// ActionTagResource is the action of TagResource.
	ActionTagResource = "kms:TagResource"
	// ActionUntagResource is the action of UntagResource.
	ActionUntagResource = "kms:UntagResource"
	// ActionListResourceTags is the action of ListResourceTags.
	ActionListResourceTags = "kms:ListResourceTags"

	// ActionCreatePrincipal is the administrative action that creates a
	// principal.
	ActionCreatePrincipal = AdminPrefix + "CreatePrincipal"
	// ActionListPrincipals is the administrative action that lists
	// principals.
	ActionListPrincipals = AdminPrefix + "ListPrincipals"
	// ActionDeletePrincipal is the administrative action that deletes a
	// principal.
	ActionDeletePrincipal = AdminPrefix + "DeletePrincipal"
	// ActionUpdatePrincipal is the administrative action that replaces a
	// principal's policy.
	ActionUpdatePrincipal = AdminPrefix + "UpdatePrincipal"
	// ActionRotatePrincipalSecret is the administrative action that gives
	// a principal a new secret access key.
	ActionRotatePrincipalSecret = AdminPrefix + "RotatePrincipalSecret"
	// ActionGetTokenInfo is the administrative action that reports on the
	// HSM token.
	ActionGetTokenInfo = AdminPrefix + "GetTokenInfo"
	// ActionBackupStore is the administrative action that takes a snapshot
	// of the embedded store: every key record and every sealed principal
	// secret, though nothing that decrypts without the token.
	ActionBackupStore = AdminPrefix + "BackupStore"
	// ActionCreateXksStore is the administrative action that makes a
	// logical external key store (an XKS proxy API path prefix).
	ActionCreateXksStore = AdminPrefix + "CreateXksStore"
	// ActionListXksStores is the administrative action that lists external
	// key stores, their keys and their credentials' IDs.
	ActionListXksStores = AdminPrefix + "ListXksStores"
	// ActionDeleteXksStore is the administrative action that deletes an
	// external key store.
	ActionDeleteXksStore = AdminPrefix + "DeleteXksStore"
	// ActionUpdateXksStore is the administrative action that changes an
	// external key store: its allowed keys and its credentials. Whoever
	// has it can let AWS KMS use a key, so it is apart from the others.
	ActionUpdateXksStore = AdminPrefix + "UpdateXksStore"
)

// The two action namespaces. Action patterns match case-insensitively from
// their first byte, so no "kms:" pattern matches an "hsmkms:" action and no
// "hsmkms:" pattern a "kms:" one.
const (
	// KMSPrefix starts the actions of the AWS KMS operations.
	KMSPrefix = "kms:"
	// AdminPrefix starts the actions of hsmkms's administrative operations.
	AdminPrefix = "hsmkms:"
)

// knownActions lists every action constant above.
var knownActions = [...]string{
	ActionCreateKey, ActionDescribeKey, ActionListKeys, ActionEnableKey,
	ActionDisableKey, ActionScheduleKeyDeletion, ActionCancelKeyDeletion,
	ActionRotateKeyOnDemand, ActionEnableKeyRotation, ActionDisableKeyRotation,
	ActionGetKeyRotationStatus, ActionListKeyRotations,
	ActionGetKeyPolicy, ActionListKeyPolicies, ActionPutKeyPolicy,
	ActionCreateAlias, ActionUpdateAlias, ActionDeleteAlias, ActionListAliases,
	ActionEncrypt, ActionDecrypt, ActionReEncryptFrom, ActionReEncryptTo,
	ActionGenerateDataKey, ActionGenerateDataKeyWithoutPlaintext,
	ActionGenerateDataKeyPair, ActionGenerateDataKeyPairWithoutPlaintext,
	ActionGenerateRandom, ActionSign, ActionVerify, ActionGenerateMac, ActionVerifyMac, ActionGetPublicKey,
	ActionGetParametersForImport, ActionImportKeyMaterial, ActionDeleteImportedKeyMaterial,
	ActionCreateGrant, ActionListGrants, ActionListRetirableGrants, ActionRetireGrant, ActionRevokeGrant,
	ActionUpdateKeyDescription, ActionTagResource, ActionUntagResource, ActionListResourceTags,
	ActionCreatePrincipal, ActionListPrincipals, ActionDeletePrincipal,
	ActionUpdatePrincipal, ActionRotatePrincipalSecret,
	ActionGetTokenInfo, ActionBackupStore,
	ActionCreateXksStore, ActionListXksStores, ActionDeleteXksStore, ActionUpdateXksStore,
}

// KnownActions returns every action hsmkms checks, in a new slice.
func KnownActions() []string {
	out := make([]string, len(knownActions))
	copy(out, knownActions[:])
	return out
}

// IsKnownAction reports whether action names an action hsmkms checks,
// ignoring case as action matching does.
func IsKnownAction(action string) bool {
	for _, a := range knownActions {
		if equalFoldASCII(a, action) {
			return true
		}
	}
	return false
}
