package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"filippo.io/age"
)

// Backup keys are age (age-encryption.org/v1) key pairs. The node holds
// only the public recipient ("age1…"), so a compromised node can write
// backups but not read them; the identity ("AGE-SECRET-KEY-1…") is kept
// offline and is needed to verify fully and to restore.

// GenerateIdentity returns a new identity and its recipient, as text.
// X25519 by default; postQuantum selects the hybrid ML-KEM-768 + X25519
// key type of age v1.3 (recipients "age1pq1…"), which protects archives
// kept for years against a future quantum computer, at the price of
// ~2 KB longer recipient strings and needing age ≥ v1.3 to decrypt.
func GenerateIdentity(postQuantum bool) (identity, recipient string, err error) {
	if postQuantum {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return "", "", fmt.Errorf("generate backup key: %w", err)
		}
		return id.String(), id.Recipient().String(), nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generate backup key: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// WriteIdentityFile writes a new identity to path (mode 0600, never
// overwriting) in the age identity-file format, with comments giving the
// creation time and the public recipient; development marks the file as
// not for production. It returns the recipient.
func WriteIdentityFile(path string, development, postQuantum bool, now time.Time) (string, error) {
	id, rcpt, err := GenerateIdentity(postQuantum)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if development {
		b.WriteString("# DEVELOPMENT ONLY: a backup identity kept next to the data protects nothing.\n")
	}
	fmt.Fprintf(&b, "# legiond backup identity (age), created %s\n", now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# public key: %s\n", rcpt)
	b.WriteString("# Keep this file offline; it decrypts every backup made for the public key above.\n")
	b.WriteString(id + "\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write backup identity: %w", err)
	}
	_, werr := f.WriteString(b.String())
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("write backup identity: %w", err)
	}
	return rcpt, nil
}

// LoadIdentities reads an age identity file. It refuses a file that other
// users may read.
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: backup identity: %w", ErrInvalid, err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: backup identity: %w", ErrInvalid, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: backup identity %s is readable by other users (mode %v): chmod 600 it", ErrInvalid, path, st.Mode().Perm())
	}
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("%w: backup identity %s: %w", ErrInvalid, path, err)
	}
	return ids, nil
}

// ParseRecipients parses public recipients ("age1…" or "age1pq1…"), one
// per argument or per line; blank lines and '#' comments are ignored.
func ParseRecipients(text ...string) ([]age.Recipient, error) {
	rs, err := age.ParseRecipients(strings.NewReader(strings.Join(text, "\n")))
	if err != nil {
		return nil, fmt.Errorf("%w: backup recipient: %w", ErrInvalid, err)
	}
	return rs, nil
}

// LoadRecipients reads a recipients file (one per line; an identity file
// is accepted too, and its "# public key:" comment is not needed: the
// recipients of its identities are used).
func LoadRecipients(path string) ([]age.Recipient, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: backup recipients: %w", ErrInvalid, err)
	}
	text := string(b)
	if strings.Contains(text, "AGE-SECRET-KEY-") {
		ids, err := age.ParseIdentities(strings.NewReader(text))
		if err != nil {
			return nil, fmt.Errorf("%w: backup recipients %s: %w", ErrInvalid, path, err)
		}
		var out []age.Recipient
		for _, id := range ids {
			switch v := id.(type) {
			case *age.X25519Identity:
				out = append(out, v.Recipient())
			case *age.HybridIdentity:
				out = append(out, v.Recipient())
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: backup recipients %s: no usable identity", ErrInvalid, path)
		}
		return out, nil
	}
	return ParseRecipients(text)
}

// isNotExist reports a missing file or object.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
