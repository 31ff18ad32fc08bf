package core

// Options carries what a network backend needs besides its location:
// credentials and the trust anchors that decide whom to talk to. Every
// field is optional; a backend that needs one that is missing fails with a
// permanent error naming the option. No field is ever printed or logged.
type Options struct {
	// PasswordFile names a file holding the password (SMB, SFTP password
	// authentication); trailing newlines are dropped.
	PasswordFile string
	// AskPassword, when set, is called for a password that no file gave
	// (an interactive user). prompt names the account and host.
	AskPassword func(prompt string) ([]byte, error)
	// IdentityFile is an SSH private key file (SFTP).
	IdentityFile string
	// KnownHostsFile is the OpenSSH known_hosts file checked for the
	// server's host key (SFTP); empty means ~/.ssh/known_hosts.
	KnownHostsFile string
	// HostKeyFingerprint, when set, is the accepted host key as OpenSSH
	// prints it ("SHA256:..."), instead of a known_hosts entry.
	HostKeyFingerprint string
	// AcceptHostKey, when set, is asked about a host key that neither
	// known_hosts nor HostKeyFingerprint vouches for; without it such a
	// key is refused. A key that contradicts known_hosts is always
	// refused.
	AcceptHostKey func(host, fingerprint string) bool
	// CAFile is a PEM file of extra certificate authorities trusted for
	// TLS (S3), added to the system roots.
	CAFile string
	// CredentialsFile holds S3 access keys; empty means the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
	CredentialsFile string
}
