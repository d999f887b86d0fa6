package main

import "context"

func benchSweep(ctx context.Context, env *benchEnv) error   { return nil }
func benchEconomy(ctx context.Context, env *benchEnv) error { return nil }
func benchBudget(ctx context.Context, env *benchEnv) error  { return nil }
func benchScale(ctx context.Context, env *benchEnv) error   { return nil }
