package main

import "context"

func benchBudget(ctx context.Context, env *benchEnv) error { return nil }
func benchScale(ctx context.Context, env *benchEnv) error  { return nil }
