package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/urfave/cli/v2"
)

// clientFlags are the flags of every command that talks to a server.
// Credentials come from --credentials-file (such as the root-credentials
// file a server writes), which then wins over the environment, or else
// from the AWS SDK's default chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared files).
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "endpoint", EnvVars: []string{"HSMKMS_ENDPOINT"}, Usage: "server URL, e.g. https://kms.example:8443 (host:port alone: http on loopback, https elsewhere)"},
		&cli.StringFlag{Name: "region", Value: "us-east-1", EnvVars: []string{"HSMKMS_REGION"}, Usage: "region the server signs for (else AWS_REGION or AWS_DEFAULT_REGION, as the aws CLI reads them)"},
		&cli.BoolFlag{Name: "use-imds", Usage: "let the AWS SDK take credentials from EC2 instance metadata (off unless given, or AWS_EC2_METADATA_DISABLED=false)"},
		&cli.StringFlag{Name: "credentials-file", EnvVars: []string{"HSMKMS_CREDENTIALS_FILE"}, Usage: "AWS shared credentials file to read ([default] or --profile)"},
		// The PIN flag's name is an alias, so that one habit (or one
		// script's flag) serves the local and the client commands.
		&cli.BoolFlag{Name: allowInsecureCredentialsFile, Aliases: []string{allowInsecurePINFile}, EnvVars: []string{"HSMKMS_ALLOW_INSECURE_CREDENTIALS_FILE"},
			Usage: "read a --credentials-file that group or others can access (refused by default)"},
		&cli.StringFlag{Name: "profile", EnvVars: []string{"HSMKMS_PROFILE"}, Usage: "profile of the credentials file"},
		caBundleFlag(),
	}
}

// clientRegion is the region a client command signs for: --region or
// HSMKMS_REGION, else AWS_REGION or AWS_DEFAULT_REGION as the aws CLI
// reads them (found by review: they were ignored, and a server serving
// another region refused every request with InvalidSignatureException),
// else us-east-1.
func clientRegion(c *cli.Context) string {
	if c.IsSet("region") {
		return c.String("region")
	}
	for _, name := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if r := os.Getenv(name); r != "" {
			return r
		}
	}
	return c.String("region")
}

// awsConfig loads the SDK configuration: region and credentials. Its
// callers check --endpoint first, so that a wrong one is the error a
// command reports even without credentials.
func awsConfig(c *cli.Context) (aws.Config, error) {
	// No EC2 instance metadata unless asked for: hsmkms is on-prem, and
	// missing credentials must say so (exit 3) rather than wait on
	// 169.254.169.254 and be reported as a server that cannot be reached.
	imdsState := imds.ClientDisabled
	if c.Bool("use-imds") || strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "false") {
		imdsState = imds.ClientEnabled
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(clientRegion(c)),
		config.WithRetryer(noCertificateRetries), config.WithEC2IMDSClientEnableState(imdsState)}
	ca, err := caBundle(c)
	if err != nil {
		return aws.Config{}, err
	}
	if ca != nil {
		opts = append(opts, config.WithCustomCABundle(bytes.NewReader(ca)))
	}
	if f := c.String("credentials-file"); f != "" {
		// Checked before the SDK reads the file, and so before any request.
		if !c.Bool(allowInsecureCredentialsFile) {
			if err := checkPrivateFile(f, "credentials", allowInsecureCredentialsFile); err != nil {
				return aws.Config{}, err
			}
		}
		fileOpts, err := credentialsFileOptions(c, f)
		if err != nil {
			return aws.Config{}, err
		}
		opts = append(opts, fileOpts...)
	} else if p := c.String("profile"); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	cfg, err := config.LoadDefaultConfig(c.Context, opts...)
	if err != nil {
		return cfg, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return cfg, nil
}

// credentialsFileOptions makes an explicit --credentials-file win over the
// caller's own AWS settings, as a flag should: its profile (--profile, or
// default) is read from it alone, and neither AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY nor AWS_PROFILE nor the shared config file apply.
func credentialsFileOptions(c *cli.Context, file string) ([]func(*config.LoadOptions) error, error) {
	profile := c.String("profile")
	if profile == "" {
		profile = "default"
	}
	if _, err := os.Stat(file); err != nil {
		where := ""
		if !filepath.IsAbs(file) {
			wd, _ := os.Getwd()
			where = " (a relative path is read from the current directory, " + wd + ")"
		}
		return nil, cli.Exit(fmt.Sprintf("hsmkms: --credentials-file %s: %v%s", file, errors.Unwrap(err), where), ExitAuth)
	}
	sc, err := config.LoadSharedConfigProfile(c.Context, profile, func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles, o.ConfigFiles = []string{file}, []string{}
	})
	if err == nil && !sc.Credentials.HasKeys() {
		err = errors.New("it has no aws_access_key_id and aws_secret_access_key")
	}
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("hsmkms: --credentials-file %s, profile %s: %v", file, profile, err), ExitAuth)
	}
	return []func(*config.LoadOptions) error{
		config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: sc.Credentials}),
		config.WithSharedConfigProfile(profile),
		config.WithSharedCredentialsFiles([]string{file}),
		config.WithSharedConfigFiles([]string{}),
	}, nil
}

// loadCredentials returns the credentials the SDK chain finds.
func loadCredentials(c *cli.Context) (aws.Credentials, error) {
	cfg, err := awsConfig(c)
	if err != nil {
		return aws.Credentials{}, err
	}
	creds, err := cfg.Credentials.Retrieve(c.Context)
	if err != nil {
		return creds, cli.Exit(fmt.Sprintf("hsmkms: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or give --credentials-file (%v)", err), ExitAuth)
	}
	return creds, nil
}

// kmsClient is the AWS SDK's KMS client pointed at the server.
func kmsClient(c *cli.Context) (*kms.Client, error) {
	endpoint, err := endpointURL(c.String("endpoint"))
	if err != nil {
		return nil, err
	}
	cfg, err := awsConfig(c)
	if err != nil {
		return nil, err
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(endpoint) }), nil
}

// adminClient calls the server's admin operations.
func adminClient(c *cli.Context) (*adminclient.Client, error) {
	endpoint, err := endpointURL(c.String("endpoint"))
	if err != nil {
		return nil, err
	}
	creds, err := loadCredentials(c)
	if err != nil {
		return nil, err
	}
	cl := adminclient.New(endpoint, clientRegion(c), creds)
	if cl.HTTP, err = adminHTTP(c); err != nil {
		return nil, err
	}
	return cl, nil
}
