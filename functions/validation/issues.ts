import * as v from 'valibot'
import type { FieldIssue } from '../errors/problem'
import { ProblemError } from '../errors/problem'

/** Turns valibot issues into a 400 `validation_failed` that names each offending field. */
export function validationProblem(issues: readonly v.BaseIssue<unknown>[]): ProblemError {
  const errors: FieldIssue[] = issues.map((issue) => ({
    field: v.getDotPath(issue) ?? 'body',
    message: issue.message,
  }))
  const first = errors[0]
  return new ProblemError('validation_failed', {
    detail: first === undefined ? 'The request is invalid' : `${first.field}: ${first.message}`,
    errors,
  })
}

/** Parses `input` or throws the 400 problem. */
export function parseOrThrow<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input)
  if (!result.success) {
    throw validationProblem(result.issues)
  }
  return result.output
}
