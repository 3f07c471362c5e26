// A table handler in TypeScript: typed by the row, runs after the config's transforms for the table.
import { defineHandlers, type Int64, type Toastable, type TimestampString } from '../src/index.ts';

interface Customer {
  id: Int64;
  email: string;
  full_name: Toastable<string>;
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
          if (event.after.email.endsWith('@example.invalid')) return null;
          return { ...event, after: { ...event.after, email: event.after.email.toLowerCase() } };
        },
      ],
    },
  },
});
