package intake

import "testing"

func TestVerifySignature(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"webhookEvent":"user_created"}`)
	good := Sign(secret, body)
	// Known-answer: HMAC-SHA256("s3cret", body) computed independently with openssl.
	if good != "sha256=b07e235b9c7913fea8bb92fd0f0ca9b0c51a800f72141d1dece31df59e2c40e0" {
		t.Fatalf("signature form: %s", good)
	}
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"valid", good, true},
		{"valid with spaces", " " + good + " ", true},
		{"empty", "", false},
		{"no prefix", good[len("sha256="):], false},
		{"sha1", "sha1=" + good[len("sha256="):], false},
		{"not hex", "sha256=zz", false},
		{"truncated", good[:len(good)-2], false},
		{"other secret", Sign([]byte("other"), body), false},
	} {
		if err := VerifySignature(secret, body, tc.header); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	if err := VerifySignature(secret, append(body, ' '), good); err == nil {
		t.Error("a changed body must not verify")
	}
}

func TestDerivedDeliveryIDIsStableAndDistinct(t *testing.T) {
	a := DerivedDeliveryID("user_created", "dc:JIRAUSER1", 1)
	if a != DerivedDeliveryID("user_created", "dc:JIRAUSER1", 1) {
		t.Fatal("not stable")
	}
	for _, other := range []string{
		DerivedDeliveryID("user_updated", "dc:JIRAUSER1", 1),
		DerivedDeliveryID("user_created", "dc:JIRAUSER2", 1),
		DerivedDeliveryID("user_created", "dc:JIRAUSER1", 2),
	} {
		if other == a {
			t.Fatal("collision")
		}
	}
}
