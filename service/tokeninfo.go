package service

import (
	"context"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
)

// TokenInspector is what GetTokenInfo reads of the HSM; *hsm.Token has it.
type TokenInspector interface {
	Info(ctx context.Context) (hsm.TokenInfo, error)
	Capabilities() hsm.Capabilities
	PoolStats() hsm.PoolStats
	Health() hsm.Health
}

// GetTokenInfoInput is GetTokenInfo's (empty) request.
type GetTokenInfoInput struct{}

// GetTokenInfoOutput describes the token hsmkms uses.
type GetTokenInfoOutput struct {
	Token        hsm.TokenInfo    `json:"Token"`
	Capabilities hsm.Capabilities `json:"Capabilities"`
	Pool         hsm.PoolStats    `json:"Pool"`
	Health       hsm.Health       `json:"Health"`
}

// GetTokenInfo reports on the token: what it is, what it can do, its
// session pool and its health.
func (s *Service) GetTokenInfo(ctx context.Context, _ GetTokenInfoInput) (out GetTokenInfoOutput, err error) {
	o := s.begin(ctx, policy.ActionGetTokenInfo)
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	ti, ok := s.cfg.HSM.(TokenInspector)
	if !ok {
		return out, newErr(CodeUnsupported, "this HSM does not describe itself")
	}
	if out.Token, err = ti.Info(ctx); err != nil {
		return out, s.hsmErr(err, "", 0)
	}
	return GetTokenInfoOutput{Token: out.Token, Capabilities: ti.Capabilities(), Pool: ti.PoolStats(), Health: ti.Health()}, nil
}
