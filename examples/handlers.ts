// A table handler in TypeScript: typed by the row, runs after the config's transforms for the table.
import { defineHandlers, isUnavailable, type DateString, type Int64, type Toastable, type TimestampString } from '../src/index.ts';

/** public.customers as the decoder gives it (scripts/sql/shop.sql). */
interface Customer {
  id: Int64;
  email: Toastable<string>;
  full_name: Toastable<string>;
  birth_date: DateString | null;
  vip: boolean;
  created_at: TimestampString;
}

export default defineHandlers<{ 'public.customers': Customer }>()({
  tables: {
    'public.customers': {
      transforms: [
        // E-mail addresses are compared case-insensitively downstream; test accounts never leave.
        function normaliseEmail(event) {
          if (event.op === 'd' || event.op === 't') return event;
          const { email } = event.after;
          // An update that left a long (TOASTed) address unchanged: the sinks keep the stored one.
          if (isUnavailable(email)) return event;
          if (email.endsWith('@example.invalid')) return null;
          return { ...event, after: { ...event.after, email: email.toLowerCase() } };
        },
      ],
    },
  },
});
