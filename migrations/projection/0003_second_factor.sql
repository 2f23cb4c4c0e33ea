-- The second factor proven with the code (the authenticator app), shown in receipts and to reviewers.
ALTER TABLE cases ADD COLUMN second_factor TEXT;
