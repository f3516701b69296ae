/**
 * The error catalogue: every error a client can receive, with its stable code and HTTP status.
 * Clients match on `code`; messages may change wording, codes never do.
 */
export const ERRORS = {
  invalid_json: 400,
  invalid_csv: 400,
  invalid_jsonlines: 400,
  invalid_body: 400,
  empty_matrix: 400,
  ragged_rows: 400,
  wrong_width: 400,
  not_a_number: 400,
  non_finite_value: 400,
  unknown_feature: 400,
  missing_feature: 400,
  duplicate_feature: 400,
  model_required: 400,
  no_matching_model: 400,
  bad_request: 400,
  json_too_deep: 400,
  unauthorized: 401,
  forbidden: 403,
  unknown_model: 404,
  unknown_version: 404,
  unknown_label: 404,
  not_found: 404,
  not_acceptable: 406,
  version_exists: 409,
  conflict: 409,
  request_timeout: 408,
  body_too_large: 413,
  too_many_rows: 413,
  too_many_columns: 413,
  csv_line_too_long: 413,
  upload_too_large: 413,
  too_many_entries: 413,
  model_busy: 429,
  headers_too_large: 431,
  unsupported_media_type: 415,
  non_finite_prediction: 422,
  invalid_archive: 422,
  invalid_model: 422,
  not_ready: 503,
  overloaded: 503,
  deadline_exceeded: 504,
  insufficient_storage: 507,
  prediction_failed: 500,
  internal_error: 500,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string; retryAfterSeconds?: number };
}

/** An error meant for the client: its message and field are safe to show. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly statusCode: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
    /** For 429 and 503: when to try again. In the body too, as SageMaker drops Retry-After headers. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.statusCode = ERRORS[code];
  }

  toBody(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    if (this.retryAfterSeconds !== undefined) error.retryAfterSeconds = this.retryAfterSeconds;
    return { error };
  }
}
